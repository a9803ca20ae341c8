"""Emitted bundles (stage 3), checked in-process: MONAI's workflow properties, transforms on real cases,
network output and loss, for every configuration including the cascade."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from labelzoo.planning.emit import assign_folds, bundle_name, emit_bundles, slug
from labelzoo.planning.fingerprint import extract_fingerprint
from labelzoo.planning.planner import ExperimentPlanner


@pytest.fixture(scope="module")
def planned(msd_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    fp = extract_fingerprint(msd_dataset)
    plans = ExperimentPlanner().plan(fp)
    return fp, plans, tmp_path_factory.mktemp("emit")


def _workflow(bundle: Path, files: list[str], workflow_type: str, **overrides):
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=[str(bundle / "configs" / f) for f in files], workflow_type=workflow_type,
                        logging_file=str(bundle / "configs" / "logging.conf"), bundle_root=str(bundle),
                        **overrides)
    wf.initialize()
    return wf


def _verify(bundle: Path) -> None:
    """`labelzoo bundle verify` without the runs: zoo layout, metadata schema, MONAI Label ids and keys,
    verify_net_in_out and the TorchScript round-trip (the runs are covered in tests/bundles)."""
    from labelzoo.bundle.verify import format_report, verify_bundle

    problems = verify_bundle(bundle, run=False)
    assert not problems, format_report(bundle, problems)


def _check_training_step(bundle: Path, plan_cfg: dict, in_channels: int, **infer_overrides) -> None:
    wf = _workflow(bundle, ["train.json"], "train", num_workers=0, cache_rate=0.0)
    assert not wf.check_properties()  # every required train property is there and consistent
    parser = wf.parser
    data = parser.get_parsed_content("train_datalist")
    sample = parser.get_parsed_content("train#preprocessing")(data[0])
    sample = sample[0] if isinstance(sample, list) else sample
    assert tuple(sample["image"].shape) == (in_channels, *plan_cfg["patch_size"])
    assert tuple(sample["label"].shape) == (1, *plan_cfg["patch_size"])
    net = parser.get_parsed_content("network_def")
    out = net.train()(sample["image"][None].float())
    n_heads = 1 + parser.get_parsed_content("network_def#deep_supr_num")
    # deep-supervision heads at their own resolution (nnU-Net's), 4 classes (0, 1, 3, 6 -> 0..3)
    assert isinstance(out, list) and len(out) == n_heads
    scale = np.ones(len(plan_cfg["patch_size"]), int)
    for head, stride in zip(out, plan_cfg["strides"], strict=False):
        scale = scale * np.asarray(stride)
        assert tuple(head.shape) == (1, 4, *(np.asarray(plan_cfg["patch_size"]) // scale).tolist())
    loss = parser.get_parsed_content("loss")(out, sample["label"][None])
    assert torch.isfinite(loss)
    assert tuple(net.eval()(sample["image"][None].float()).shape) == (1, 4, *plan_cfg["patch_size"])
    infer = _workflow(bundle, ["inference.json"], "infer", **infer_overrides)
    assert not infer.check_properties()
    # inference builds MONAI's plain DynUNet (TorchScript-able); the training checkpoint loads into it
    inet = infer.parser.get_parsed_content("network_def")
    assert type(inet).__name__ == "DynUNet" and not inet.deep_supervision
    assert set(inet.state_dict()) <= set(net.state_dict())


def test_fullres_and_2d_bundles(planned, msd_dataset: Path) -> None:
    fp, plans, out = planned
    written = emit_bundles(plans, fp, out / "a", msd_dataset)
    assert [p.name for p in written] == ["labelzoosyntheticct_ct_nnunet3dfullres_segmentation",
                                         "labelzoosyntheticct_ct_nnunet2d_segmentation"]
    for bundle in written:
        for f in ["LICENSE", "large_files.yml", "docs/README.md", "configs/metadata.json", "configs/train.json",
                  "configs/inference.json", "configs/evaluate.json", "configs/multi_gpu_train.json",
                  "configs/logging.conf", "configs/datalist.json"]:
            assert (bundle / f).is_file(), f
        meta = json.loads((bundle / "configs" / "metadata.json").read_text())
        assert meta["version"] in meta["changelog"] and "labelzoo" in meta["required_packages_version"]
        # contiguous class indices in the order of the dataset's label values (1, 3, 6 -> 1, 2, 3)
        assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
            "0": "background", "1": "spleen", "2": "left kidney", "3": "liver"}
        _verify(bundle)
        # no machine path in the configs but the dataset the user planned on (the repository's root is not there)
        repo_root = str(Path(__file__).resolve().parents[2])
        assert repo_root not in (bundle / "configs" / "train.json").read_text().replace(str(msd_dataset.resolve()), "")
    _check_training_step(written[0], plans["configurations"]["3d_fullres"], 1)
    _check_training_step(written[1], plans["configurations"]["2d"], 1)
    train = json.loads((written[0] / "configs" / "train.json").read_text())
    crop = next(t for t in train["train"]["random_transforms"] if t["_target_"] == "RandCropByLabelClassesd")
    fg_share = sum(crop["ratios"][1:]) / sum(crop["ratios"])
    assert fg_share == pytest.approx(0.5)  # nnU-Net's batch of 2: the last sample forced to foreground
    train2d = json.loads((written[1] / "configs" / "train.json").read_text())
    crop = next(t for t in train2d["train"]["random_transforms"] if t["_target_"] == "RandCropByLabelClassesd")
    batch = plans["configurations"]["2d"]["batch_size"]
    assert sum(crop["ratios"][1:]) / sum(crop["ratios"]) == pytest.approx((batch - round(batch * 0.67)) / batch)
    assert train["network_def"]["deep_supervision"] is True


def test_cascade_takes_stage1_onehot_as_input(planned, msd_dataset: Path) -> None:
    fp, plans, out = planned
    # force a cascade on the tiny data: patch limited to a quarter of the image by a small GPU budget-like plan
    cfg = plans["configurations"]["3d_fullres"]
    plans = json.loads(json.dumps(plans))
    plans["configurations"]["3d_lowres"] = {**cfg, "next_stage": "3d_cascade_fullres"}
    plans["configurations"]["3d_cascade_fullres"] = {**cfg, "previous_stage": "3d_lowres"}
    written = emit_bundles(plans, fp, out / "b", msd_dataset, configurations=["3d_lowres", "3d_cascade_fullres"])
    lowres, cascade = written
    assert cascade.name == bundle_name(plans, "3d_cascade_fullres")
    # stage-1 cross-validation predictions (here: the labels as class indices, as train-cv writes them)
    import nibabel as nib

    from labelzoo.io import save_nifti

    preds = lowres / "cv" / "predictions"
    for case in fp["cases"]:
        img = nib.load(msd_dataset / case["label"])
        raw = np.asanyarray(img.dataobj)
        idx = np.zeros(raw.shape, np.uint8)
        for i, v in enumerate([0, 1, 3, 6]):
            idx[raw == v] = i
        save_nifti(idx, img.affine, preds / f"{case['case_id']}_seg.nii.gz")
    _verify(cascade)
    net = json.loads((cascade / "configs" / "train.json").read_text())["network_def"]
    assert net["in_channels"] == 1 + 4
    _check_training_step(cascade, cfg, 1 + 4, stage1_checkpoint=None)
    # inference: stage 1 runs inside the inferer, on an image-only input
    wf = _workflow(cascade, ["inference.json"], "infer", stage1_checkpoint=None)
    inferer, net2 = wf.parser.get_parsed_content("inferer"), wf.parser.get_parsed_content("network_def")
    image = torch.randn(1, 1, *cfg["patch_size"])
    assert inferer(image, net2.eval()).shape == (1, 4, *cfg["patch_size"])


def test_pure_helpers() -> None:
    assert slug("Task09_Spleen") == "spleen" and slug("Dataset002_Heart") == "heart"
    folds = assign_folds([f"c{i}" for i in range(12)])
    assert sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    assert assign_folds([f"c{i}" for i in range(12)]) == folds  # deterministic
    assert np.bincount(list(folds.values())).tolist() == [3, 3, 2, 2, 2]
    assert sorted(set(assign_folds(["a", "b"]).values())) == [0, 1]
    # nnU-Net's forced-foreground share of a batch (oversample_foreground_percent 0.33): last 1 of 2, 7 of 20
    from labelzoo.planning.emit import foreground_share

    shares = [foreground_share({"foreground_sampling_ratio": 0.33}, {"batch_size": b}) for b in (1, 2, 20, 40)]
    assert shares == pytest.approx([0.33, 0.5, 0.35, 13 / 40])
    assert foreground_share({"foreground_sampling_ratio": 0.5}, {"batch_size": 20}) == 0.5  # older plans


def test_recipe_parity_items(planned, msd_dataset: Path) -> None:
    """The nnU-Net v2 recipe items the emitter fixed, in the emitted JSON (and the docs table)."""
    fp, plans, out = planned
    bundle = emit_bundles(plans, fp, out / "r", msd_dataset, configurations=["3d_fullres"])[0]
    train = json.loads((bundle / "configs" / "train.json").read_text())
    rand = {t["_target_"]: t for t in train["train"]["random_transforms"]}
    assert "RandAffined" not in rand and rand["RandRotated"]["prob"] == rand["RandZoomd"]["prob"] == 0.2
    contrast = rand["RandScaleIntensityFixedMeand"]
    assert contrast["prob"] == 0.15 and contrast["preserve_range"]
    # nnU-Net's probability per channel: p 0.25 / 0.2, then p_per_channel 0.5
    assert rand["RandSimulateLowResolutiond"]["prob"] == 0.125 and rand["RandGaussianSmoothd"]["prob"] == 0.1
    # batchgeneratorsv2 draws the noise *std* from noise_variance=(0, 0.1)
    assert rand["RandGaussianNoised"]["std"] == 0.1 and rand["RandGaussianNoised"]["sample_std"] is True
    clip = [h for h in train["train"]["handlers"] if h["_target_"] == "labelzoo.optim.ClipGradNorm"]
    assert [h["max_norm"] for h in clip] == [12.0]
    assert train["seed"] == 0 and "$monai.utils.set_determinism(seed=@seed)" in train["initialize"]
    # nnU-Net's label interpolation: indicator map per label value, linear, argmax (nearest past the memory bound)
    steps = [t["_target_"] for t in train["train"]["random_transforms"]]
    n = len(plans["labels"])
    i = steps.index("RandRotated")
    assert steps[i - 1] == "labelzoo.planning.transforms.LabelToIndicatorsd"
    assert steps[i + 2] == "labelzoo.planning.transforms.IndicatorsToLabeld"
    assert rand["RandRotated"]["mode"] == ["bilinear", "bilinear"]
    assert rand["RandZoomd"]["mode"] == ["trilinear", "trilinear"]
    from labelzoo.planning.emit import ONEHOT_LABEL_BYTES, onehot_labels

    assert onehot_labels(4, [40, 48, 40]) and not onehot_labels(105, [128, 128, 128])
    assert onehot_labels(ONEHOT_LABEL_BYTES // 4, [1]) and not onehot_labels(ONEHOT_LABEL_BYTES // 4 + 1, [1])
    gammas = [t for t in train["train"]["random_transforms"] if t["_target_"] == "RandAdjustContrastd"]
    assert [(g["prob"], g["invert_image"], g["retain_stats"]) for g in gammas] == [(0.1, True, True),
                                                                                    (0.3, False, True)]
    assert train["num_workers"] == "$labelzoo.planning.transforms.num_workers()"
    infer = json.loads((bundle / "configs" / "inference.json").read_text())
    assert infer["inferer"]["_target_"] == "labelzoo.inferers.MirroringInferer" and infer["use_mirroring"] is True
    assert infer["inferer"]["spatial_axes"] == [0, 1, 2]
    assert infer["handlers"][0]["strict"] is True
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert "eval_metrics" not in meta  # filled by find-best, no placeholder
    docs = (bundle / "docs" / "README.md").read_text()
    assert "| low-resolution simulation |" in docs and "| checkpoint loading |" in docs
    assert "| gradient clipping |" in docs and "| patch placement |" in docs
    # the random transforms run on a real case (2 draws: every branch has a chance to fire)
    wf = _workflow(bundle, ["train.json"], "train", num_workers=0, cache_rate=0.0)
    data = wf.parser.get_parsed_content("train_datalist")
    for _ in range(2):
        s = wf.parser.get_parsed_content("train#preprocessing")(data[0])
        s = s[0] if isinstance(s, list) else s
        assert tuple(s["image"].shape[1:]) == tuple(plans["configurations"]["3d_fullres"]["patch_size"])
        assert s["label"].shape[0] == 1 and set(torch.unique(s["label"]).tolist()) <= set(range(n))
    # rotation and scaling forced on: the one-hot label is resampled and comes back as one map of class indices
    for j, tr in enumerate(train["train"]["random_transforms"]):
        if tr["_target_"] in ("RandRotated", "RandZoomd"):
            wf.parser[f"train#random_transforms#{j}#prob"] = 1.0
    s = wf.parser.get_parsed_content("train#preprocessing")(data[0])
    s = s[0] if isinstance(s, list) else s
    values = set(torch.unique(s["label"]).tolist())
    assert s["label"].shape[0] == 1 and values <= set(range(n)) and len(values) > 1


def test_label_indicators_resample_labels_as_nnunet() -> None:
    """Label -> indicator per value -> linear resampling -> the largest value back (nnU-Net's label interpolation);
    any value passes (partial-label ignore 255), zero padding comes back as background."""
    from monai.transforms import Rotated, Zoomd

    from labelzoo.planning.transforms import IndicatorsToLabeld, LabelToIndicatorsd

    label = torch.zeros(1, 24, 24)
    label[0, 4:20, 4:20] = 2.0
    label[0, 8:16, 8:16] = 255.0  # e.g. the unannotated voxels of a partial label
    d = LabelToIndicatorsd("label")({"label": label.clone()})
    assert d["label"].shape == (3, 24, 24) and d["label_values"].tolist() == [0.0, 2.0, 255.0]
    assert torch.equal(IndicatorsToLabeld("label")(dict(d))["label"], label)  # no resampling: unchanged
    # a label without background still gets background as channel 0: padding stays background
    full = LabelToIndicatorsd("label")({"label": torch.full((1, 4, 4), 3.0)})
    assert full["label_values"].tolist() == [0.0, 3.0]
    shrunk = Zoomd("label", zoom=0.5, mode="bilinear", keep_size=True, padding_mode="constant")(full)
    out = IndicatorsToLabeld("label")(shrunk)["label"]
    assert set(out.unique().tolist()) == {0.0, 3.0} and out[0, 0, 0] == 0 and out[0, 2, 2] == 3
    # rotation: the largest interpolated indicator wins, as an independent argmax over the rotated maps says
    rot = Rotated("label", angle=0.4, mode="bilinear", padding_mode="zeros", keep_size=True)
    got = IndicatorsToLabeld("label")(rot(LabelToIndicatorsd("label")({"label": label.clone()})))["label"]
    maps = torch.stack([rot({"label": (label == v).float()})["label"][0] for v in (0.0, 2.0, 255.0)])
    want = torch.tensor([0.0, 2.0, 255.0])[maps.argmax(0)]
    assert torch.equal(got[0], want) and set(got.unique().tolist()) == {0.0, 2.0, 255.0}
    with pytest.raises(ValueError, match="label: expected one label channel"):
        LabelToIndicatorsd("label")({"label": torch.zeros(2, 4, 4)})


def test_strict_checkpoint_loading(tmp_path: Path) -> None:
    from monai.networks.nets import DynUNet

    from labelzoo.planning.transforms import load_inference_weights, num_workers

    args = dict(spatial_dims=3, in_channels=1, out_channels=3, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2],
                upsample_kernel_size=[2, 2, 2], filters=[4, 8, 16, 32])
    trained = DynUNet(**args, deep_supervision=True, deep_supr_num=1)
    torch.save({"model": trained.state_dict()}, tmp_path / "model.pt")
    infer = DynUNet(**args, deep_supervision=False)
    load_inference_weights(infer, str(tmp_path / "model.pt"))  # heads dropped, everything else strict
    assert torch.equal(infer.state_dict()["output_block.conv.conv.weight"],
                       trained.state_dict()["output_block.conv.conv.weight"])
    other = DynUNet(**{**args, "out_channels": 2}, deep_supervision=False)  # another configuration's weights
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(RuntimeError, match="other.pt"):
        load_inference_weights(infer, str(tmp_path / "other.pt"))
    with pytest.raises(FileNotFoundError):
        load_inference_weights(infer, str(tmp_path / "missing.pt"))
    assert 0 <= num_workers() <= 8 and num_workers(max_workers=0) == 0


def test_training_threads_follow_the_process_and_can_be_set(planned, msd_dataset: Path) -> None:
    """The training process keeps torch's threads as it has them (one per core, or OMP_NUM_THREADS: what
    ``labelzoo simulate --threads`` sets), like ``nnUNetv2_train -device cpu``; ``--num_threads 1`` sets them
    in ``initialize`` when ``monai.bundle run`` starts (for cores other work already uses)."""
    fp, plans, out = planned
    bundle = emit_bundles(plans, fp, out / "threads", msd_dataset, configurations=["3d_fullres"])[0]
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert train["num_threads"] == "$torch.get_num_threads()"
    assert "$torch.set_num_threads(@num_threads)" in train["initialize"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        wf = _workflow(bundle, ["train.json"], "train", num_workers=0, cache_rate=0.0)
        wf.parser.get_parsed_content("initialize")
        assert torch.get_num_threads() == 2
        wf = _workflow(bundle, ["train.json"], "train", num_workers=0, cache_rate=0.0, num_threads=1)
        wf.parser.get_parsed_content("initialize")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_class_locations_are_cached_not_recomputed_per_patch(planned, msd_dataset: Path) -> None:
    """The crop draws its centres from class locations computed once per case (cached by CacheDataset, at most
    CLASS_LOCATIONS per class like nnU-Net), and the locations do not reach the batch."""
    from monai.data import CacheDataset
    from monai.transforms import ClassesToIndicesd, RandCropByLabelClassesd

    from labelzoo.planning.emit import CLASS_LOCATIONS

    fp, plans, out = planned
    bundle = emit_bundles(plans, fp, out / "loc", msd_dataset, configurations=["3d_fullres"])[0]
    wf = _workflow(bundle, ["train.json"], "train", num_workers=0, cache_rate=1.0)
    dataset: CacheDataset = wf.parser.get_parsed_content("train#dataset")
    transforms = dataset.transform.transforms
    locate = next(i for i, t in enumerate(transforms) if isinstance(t, ClassesToIndicesd))
    crop = next(i for i, t in enumerate(transforms) if isinstance(t, RandCropByLabelClassesd))
    assert locate < crop and transforms[crop].indices_key == "label_cls_indices"
    cached = dataset._cache[0]  # what CacheDataset keeps of case 0: every transform before the first random one
    locations = cached["label_cls_indices"]
    assert len(locations) == 4 and all(0 < len(ix) <= CLASS_LOCATIONS for ix in locations)
    label = cached["label"]
    for c, ix in enumerate(locations):  # every location is a voxel of its class in the cached label
        assert bool((label.reshape(-1)[torch.as_tensor(np.asarray(ix))] == c).all())
    sample = dataset[0]
    sample = sample[0] if isinstance(sample, list) else sample
    assert "label_cls_indices" not in sample
    assert tuple(sample["image"].shape[1:]) == tuple(plans["configurations"]["3d_fullres"]["patch_size"])


def test_random_part_runs_without_metadata_and_restores_tracking(planned, msd_dataset: Path) -> None:
    """The random augmentation runs on plain tensors (no MetaTensor bookkeeping, as nnU-Net's); CacheDataset caches
    the deterministic part with its metadata, never runs the switch, and tracking is back on after a sample."""
    from monai.data import CacheDataset, MetaTensor, get_track_meta

    from labelzoo.planning.transforms import TrackMetad

    fp, plans, out = planned
    bundle = emit_bundles(plans, fp, out / "meta", msd_dataset, configurations=["2d"])[0]
    wf = _workflow(bundle, ["train.json"], "train", num_workers=0, cache_rate=1.0)
    dataset: CacheDataset = wf.parser.get_parsed_content("train#dataset")
    switches = [(i, t.track) for i, t in enumerate(dataset.transform.transforms) if isinstance(t, TrackMetad)]
    assert [s for _, s in switches] == [False, True] and switches[1][0] == len(dataset.transform.transforms) - 1
    assert get_track_meta() and isinstance(dataset._cache[0]["image"], MetaTensor)  # cached with its metadata
    sample = dataset[0]
    sample = sample[0] if isinstance(sample, list) else sample
    assert type(sample["image"]) is torch.Tensor and type(sample["label"]) is torch.Tensor
    assert get_track_meta()  # the main process (num_workers 0) keeps tracking for validation and inference
