"""Augmentation / loss / lr codes -> MONAI transforms, losses and optimiser; dataset reading; bundle emitter."""

from __future__ import annotations

import json

import pytest
import torch

from labelzoo.automl import decode, space
from labelzoo.automl.components import (
    augmentation_config,
    augmentation_configs,
    instantiate,
    loss_config,
    optimizer_config,
    preprocessing_configs,
)
from labelzoo.automl.train import read_msd_dataset
from labelzoo.errors import LabelZooError

TAIL = [1, 1, 1, 1, 1, 1, 1, 1, 4, 1]


@pytest.mark.parametrize("name", space.AUGMENTATIONS)
def test_each_augmentation_is_a_monai_transform_with_p_0_15(name):
    assert augmentation_config(name)["prob"] == 0.15
    assert instantiate(augmentation_config(name)).prob == pytest.approx(0.15)
    t = instantiate(augmentation_config(name, prob=1.0))  # forced to apply
    assert type(t).__module__.startswith("monai.transforms")
    sample = {"image": torch.rand(1, 32, 32, 32), "label": torch.randint(0, 3, (1, 32, 32, 32)).float()}
    t.set_random_state(0)
    out = t(sample)
    assert out["image"].shape == (1, 32, 32, 32)
    assert not torch.equal(torch.as_tensor(out["image"]), sample["image"])  # it changed the image
    spatial = name.startswith(("flip", "rot90", "zoom"))
    assert ("label" in (t.keys if isinstance(t.keys, tuple) else (t.keys,))) == spatial


def test_selected_augmentations_follow_the_vector():
    config = decode([0, 0, 0, -1, -1, 1, 0, 0, 0, -1] + [0, 1, 0, 0, 0, 1, 0, 0] + [0, 0])
    items = augmentation_configs(config.augmentations)
    assert [i["_target_"] for i in items] == ["RandFlipd", "RandGaussianNoised"]
    assert items[0]["spatial_axis"] == 1


@pytest.mark.parametrize("name", space.LOSSES)
def test_each_loss_is_a_monai_loss_on_logits_and_label_maps(name):
    loss_fn = instantiate(loss_config(name))
    assert type(loss_fn).__module__.startswith("monai.losses")
    target = torch.randint(0, 3, (2, 1, 8, 8, 8))
    perfect = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20
    worse = torch.zeros(2, 3, 8, 8, 8)
    assert float(loss_fn(perfect, target)) < float(loss_fn(worse, target))


def test_loss_options():
    assert loss_config("dice_squared_pred")["squared_pred"] is True
    assert loss_config("ce")["lambda_dice"] == 0.0
    with pytest.raises(LabelZooError, match="loss: expected one of"):
        loss_config("hinge")
    with pytest.raises(LabelZooError, match="augmentation: expected one of"):
        augmentation_config("elastic")


@pytest.mark.parametrize("lr", space.LEARNING_RATES)
def test_optimizer_gets_the_learning_rate(lr):
    net = torch.nn.Linear(2, 2)
    opt = instantiate(optimizer_config(lr), network=net)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == lr


def test_preprocessing_maps_sparse_label_values():
    items = preprocessing_configs([0, 1, 3, 6])
    mapping = [i for i in items if i["_target_"] == "MapLabelValued"]
    assert mapping and mapping[0]["orig_labels"] == [0, 1, 3, 6] and mapping[0]["target_labels"] == [0, 1, 2, 3]
    assert not [i for i in preprocessing_configs([0, 1, 2]) if i["_target_"] == "MapLabelValued"]
    assert all(i.get("keys") != "label" for i in preprocessing_configs(with_label=False))


def test_read_msd_dataset_errors(tmp_path):
    with pytest.raises(LabelZooError, match="is not a folder"):
        read_msd_dataset(tmp_path / "missing")
    with pytest.raises(LabelZooError, match="dataset.json not found"):
        read_msd_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{")
    with pytest.raises(LabelZooError, match="dataset.json is not valid JSON"):
        read_msd_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "x"}}))
    with pytest.raises(LabelZooError, match="field 'training' is missing"):
        read_msd_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "x"},
                                                       "training": [{"image": "a.nii.gz", "label": "b.nii.gz"}]}))
    with pytest.raises(LabelZooError, match=r"training\[0\] image file .*a.nii.gz does not exist"):
        read_msd_dataset(tmp_path)


def test_emit_bundle_refuses_an_existing_folder(tmp_path):
    from labelzoo.automl.bundle import emit_bundle
    from labelzoo.data import build_sample_studies

    ds = build_sample_studies(tmp_path / "ds", n_images=3, n_labeled=3, shape=(16, 16, 16), layout="msd")
    info = read_msd_dataset(ds)
    vector = [0, 0, 0, -1, -1, 1, 1, 1, 0, -1] + TAIL
    bundle = emit_bundle(tmp_path / "x_ct_tautoml_segmentation", vector, info, [16, 16, 16], 4)
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert train["learning_rate"] == 0.0001 and train["loss"]["_target_"] == "DiceLoss"
    assert len(train["train"]["random_transforms"]) == 2 + len(space.AUGMENTATIONS)
    assert 'path: "models/model.pt"' in (bundle / "large_files.yml").read_text()  # listed, url empty: no weights
    with pytest.raises(LabelZooError, match="already exists"):
        emit_bundle(bundle, vector, info, [16, 16, 16], 4)
