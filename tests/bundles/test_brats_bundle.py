"""The BraTS axial-attention bundle: its paper and baseline networks, and the baseline variant's real run.

``tests/bundles/test_verify.py`` verifies every bundle with a real 1-epoch run, this one and its ablation
baseline (``configs/smoke.json`` lists ``configs/baseline.json`` under ``variants``). Here: the networks the
configs build, the training augmentations, and inference output in the BraTS label convention.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import DynUNet

from labelzoo.bundle.verify import verify_bundle
from labelzoo.networks import AxialAttention, AxialDynUNet

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "brats_mri_axialattention_segmentation"


def network(*files: str, overrides: dict | None = None, config: str = "train.json") -> AxialDynUNet:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / config)] + [str(BUNDLE / "configs" / f) for f in files])
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser.get_parsed_content("network_def")


def test_train_config_builds_the_paper_network() -> None:
    net = network()
    assert isinstance(net, AxialDynUNet) and net.deep_supervision and net.deep_supr_num == 3
    assert net.encoder_filters == [64, 128, 256, 512, 512, 512]
    assert net.decoder_filters == [32, 64, 128, 256, 320, 320]
    assert [net.attention_shape(level) for level in range(5)] == [None, (4, 16), (8, 32), (16, 64), (32, 128)]
    assert {type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__} == {"GroupNorm"}
    # inference.json: the same network without deep-supervision outputs, and the same state dict
    infer = network(config="inference.json")
    assert not infer.deep_supervision
    infer.load_state_dict(net.state_dict(), strict=True)


def test_baseline_override_is_monais_plain_dynunet() -> None:
    torch.manual_seed(0)
    base = network("baseline.json").eval()
    assert not any(isinstance(m, AxialAttention) for m in base.modules())
    assert base.encoder_filters == base.decoder_filters == [32, 64, 128, 256, 320, 320]
    assert {type(m).__name__ for m in base.modules() if "Norm" in type(m).__name__} == {"BatchNorm3d"}
    plain = DynUNet(3, 4, 3, kernel_size=[3] * 6, strides=[1, 2, 2, 2, 2, 2], upsample_kernel_size=[2] * 5,
                    filters=[32, 64, 128, 256, 320, 320], norm_name=("BATCH", {"affine": True}),
                    deep_supervision=True, deep_supr_num=3).eval()
    plain.load_state_dict(base.state_dict(), strict=True)  # same modules, same names
    x = torch.rand(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), base(x))


@pytest.mark.parametrize(("variant", "enhancing"), [(None, 4), ("baseline.json", 3)])
def test_inference_pipeline_writes_a_brats_label_map(tmp_path: Path, variant: str | None, enhancing: int) -> None:
    """inference.json's own preprocessing, network, inferer and postprocessing, in-process.

    The real runs of both variants (``python -m monai.bundle run``, 1-epoch training first) are in
    ``tests/bundles/test_verify.py`` (``configs/smoke.json`` lists ``baseline.json`` under ``variants``).
    """
    from labelzoo.data import build_brats_studies

    data = build_brats_studies(tmp_path / "data", n_images=1, n_labeled=0, shape=(40, 40, 32), layout="msd")
    smoke = json.loads((BUNDLE / "configs" / "smoke.json").read_text())
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "inference.json")]
                       + ([str(BUNDLE / "configs" / variant)] if variant else []))
    parser.update({**smoke["all"], **smoke["inference"], "dataset_dir": str(data), "output_dir": str(tmp_path / "out"),
                   "enhancing_label": enhancing, "use_mirroring": False})
    torch.manual_seed(0)
    net = parser.get_parsed_content("network").eval()
    pre, post = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("postprocessing")
    item = pre(parser.get_parsed_content("datalist")[0])
    with torch.no_grad():
        logits = parser.get_parsed_content("inferer")(item["image"][None], net)[0]
    item["pred"] = logits + torch.linspace(-3, 3, logits.shape[-1])  # some voxels above, some below 0.5
    post(item)
    (pred_file,) = (tmp_path / "out").glob("*_seg.nii.gz")
    source = nib.load(data / "imagesTs" / "case_000.nii.gz")
    pred = nib.load(pred_file)
    assert pred.shape == source.shape[:3] and np.allclose(pred.affine, source.affine)
    values = set(np.unique(np.asarray(pred.dataobj)).tolist())
    assert values <= {0, 1, 2, enhancing} and len(values) > 1
    # un-cropped into the input grid: nothing outside the bounding box of the non-zero (brain) voxels
    outside = np.ones(source.shape[:3], bool)
    box = np.nonzero(np.asarray(source.dataobj).sum(-1))
    outside[tuple(slice(i.min(), i.max() + 1) for i in box)] = False
    assert not np.asarray(pred.dataobj)[outside].any()


def test_region_channels_and_label_map_are_checked(tmp_path: Path) -> None:
    """Region bundles name the network channels in channel_def (the model zoo's meaning) and the label map's values
    in the top-level ``labelzoo.label_map``; ``region_def`` (unknown to the zoo schema) is refused."""
    import shutil

    broken = tmp_path / BUNDLE.name
    shutil.copytree(BUNDLE, broken, ignore=shutil.ignore_patterns("models", "eval"))
    meta_file = broken / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    pred = meta["network_data_format"]["outputs"]["pred"]
    pred["channel_def"]["4"] = "enhancing tumor"
    pred["region_def"] = {"0": "ET", "1": "TC", "2": "WT"}
    meta["labelzoo"]["label_map"].pop("0")
    meta_file.write_text(json.dumps(meta, indent=4) + "\n")
    problems = verify_bundle(broken, run=False)
    where = {p.id: p.message for p in problems if p.check in ("monailabel", "metadata")}
    assert "do not match num_channels=3" in where["network_data_format#outputs#pred#channel_def"]
    assert "not in the model-zoo metadata schema" in where["network_data_format#outputs#pred#region_def"]
    assert "must include 0 (background)" in where["labelzoo#label_map"]


def test_app_labels_are_the_label_map() -> None:
    from labelzoo.discovery import read_bundle_info

    info = read_bundle_info(BUNDLE)
    assert info.multilabel and info.labels == {"necrotic tumor core": 1, "peritumoral edema": 2, "enhancing tumor": 4}


def test_every_training_augmentation_runs(tmp_path: Path) -> None:
    """With every augmentation's probability at 1, the training transforms give image/region patches."""
    from labelzoo.data import build_brats_studies

    data = build_brats_studies(tmp_path / "data", n_images=1, n_labeled=1, shape=(40, 40, 32), layout="msd")
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"aug_prob": 1.0, "patch_size": [32, 32, 32], "num_samples": 2})
    transform = parser.get_parsed_content("train#preprocessing")
    case = {"image": str(data / "imagesTr" / "case_000.nii.gz"), "label": str(data / "labelsTr" / "case_000.nii.gz")}
    patches = transform(case)
    assert len(patches) == 2
    for patch in patches:
        assert patch["image"].shape == (4, 32, 32, 32) and patch["label"].shape == (3, 32, 32, 32)
        assert set(torch.unique(patch["label"]).tolist()) <= {0.0, 1.0}
        assert bool((patch["label"][0] <= patch["label"][1]).all())  # ET inside TC survives nearest resampling
