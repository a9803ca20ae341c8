"""`find-best` over cross-validation outputs laid out as `train-cv` writes them (written here by hand, so the
choice is known): the ensemble wins when its averaged softmax is better, post-processing is decided from CV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from labelzoo.errors import LabelZooError
from labelzoo.io import save_nifti, write_json_atomic
from labelzoo.planning.crossval import find_best
from labelzoo.planning.emit import emit_bundles
from labelzoo.planning.fingerprint import extract_fingerprint
from labelzoo.planning.planner import ExperimentPlanner


def _fake_cv(bundle: Path, msd: Path, probs: dict[str, np.ndarray], dice: dict[str, dict]) -> None:
    from monai.bundle import ConfigParser

    cv = bundle / "cv"
    cases = json.loads((bundle / "configs" / "datalist.json").read_text())["training"]
    write_json_atomic(cv / "datalist.json", {"training": [{**c, "label": str(msd / c["label"])} for c in cases]})
    for case, p in probs.items():  # (C, X, Y, Z) softmax saved channels-last, as SaveImaged does
        save_nifti(np.moveaxis(p, 0, -1), np.eye(4), cv / "predictions" / f"{case}_prob.nii.gz")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def")
    for k in range(2):
        (cv / f"fold_{k}").mkdir(parents=True, exist_ok=True)
        torch.save({"model": net.state_dict()}, cv / f"fold_{k}" / "model.pt")
    cfg = json.loads((bundle / "configs" / "plan.json").read_text())["configuration"]
    table = {c: {k: v for k, v in d["dice"].items()} for c, d in dice.items()}
    mean = float(np.mean([np.nanmean(list(t.values())) for t in table.values()]))
    write_json_atomic(cv / "summary.json", {"configuration": cfg, "bundle": bundle.name, "folds": 2,
                                            "label_values": [0, 1, 3, 6], "lcc_candidates": [1, 3, 6],
                                            "mean_dice": mean, "cases": dice})


def test_find_best_ensemble_and_postprocessing(msd_dataset: Path, tmp_path: Path) -> None:
    fp = extract_fingerprint(msd_dataset)
    plans = ExperimentPlanner().plan(fp)
    full, two_d = emit_bundles(plans, fp, tmp_path, msd_dataset)
    ids = [c["case_id"] for c in fp["cases"]]
    # reference class-index maps of each case
    import nibabel as nib

    refs = {}
    for c in fp["cases"]:
        raw = np.asanyarray(nib.load(msd_dataset / c["label"]).dataobj)
        ref = np.zeros(raw.shape, np.int64)
        for i, v in enumerate([0, 1, 3, 6]):
            ref[raw == v] = i
        refs[c["case_id"]] = ref
    onehot = {c: np.eye(4, dtype=np.float32)[r].transpose(3, 0, 1, 2) for c, r in refs.items()}
    # each configuration alone is wrong on half of the foreground, differently; their average is right
    rng = np.random.default_rng(0)
    probs_a, probs_b = {}, {}
    for c, oh in onehot.items():
        noise = rng.random(oh.shape[1:]) < 0.5
        wrong = np.roll(oh, 1, axis=0)
        probs_a[c] = np.where(noise, 0.45 * oh + 0.55 * wrong, oh)
        probs_b[c] = np.where(~noise, 0.45 * oh + 0.55 * wrong, oh)
        for p in (probs_a[c], probs_b[c]):  # both see a stray spleen (class 1) blob in the air of a corner
            p[:, :3, :3, :3] = np.eye(4, dtype=np.float32)[1][:, None, None, None]
    # the single configurations' own tables say the step hurts class 1: an ensemble must not go by them
    lcc_helps = {c: {"fold": i % 2, "dice": {"1": 0.5, "2": 0.5, "3": 0.5},
                     "dice_lcc": {"1": 0.4, "2": 0.4, "3": 0.5}} for i, c in enumerate(ids)}
    _fake_cv(full, msd_dataset, probs_a, lcc_helps)
    _fake_cv(two_d, msd_dataset, probs_b,
             {c: {**v, "dice": {"1": 0.4, "2": 0.4, "3": 0.4}} for c, v in lcc_helps.items()})

    report = find_best(str(tmp_path))
    result = json.loads((tmp_path / "find_best.json").read_text())
    assert result["best"] == "ensemble__2d__3d_fullres", report
    assert result["scores"]["ensemble__2d__3d_fullres"] > max(result["scores"]["2d"], result["scores"]["3d_fullres"])
    assert result["host"] == "3d_fullres"  # the 3D member hosts the ensemble
    # decided on the ensemble's CV predictions: removing the stray blob helps class 1; classes 2, 3 unchanged
    assert result["postprocessing_lcc_classes"] == [1]
    assert result["postprocessing_decided_on"] == "ensemble__2d__3d_fullres"
    best = tmp_path / "best" / full.name
    inference = json.loads((best / "configs" / "inference.json").read_text())
    assert inference["postprocessing_lcc_classes"] == [1]
    assert (best / "models" / "model.pt").is_file() and (best / "models" / "member_2d.pt").is_file()
    assert inference["inferer"]["_target_"] == "labelzoo.planning.ensemble.EnsembleInferer"
    assert "models/member_2d.pt" in (best / "large_files.yml").read_text()
    meta = json.loads((best / "configs" / "metadata.json").read_text())
    assert meta["version"] == "0.1.1" and "ensemble of 3d_fullres and 2d" in meta["changelog"]["0.1.1"]

    # the served bundle's inference runs both members and averages them
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(best / "configs" / "inference.json"))
    parser["bundle_root"] = str(best)
    inferer, net = parser.get_parsed_content("inferer"), parser.get_parsed_content("network_def")
    out = inferer(torch.randn(1, 1, 48, 48, 32), net.eval())
    assert out.shape == (1, 4, 48, 48, 32)
    assert torch.allclose(torch.softmax(out, 1).sum(1), torch.ones(1, 48, 48, 32), atol=1e-4)


def test_find_best_all_folds(msd_dataset: Path, tmp_path: Path) -> None:
    """--all_folds serves every fold model of the chosen configuration, averaged."""
    fp = extract_fingerprint(msd_dataset)
    (two_d,) = emit_bundles(ExperimentPlanner().plan(fp), fp, tmp_path, msd_dataset, configurations=["2d"])
    ids = [c["case_id"] for c in fp["cases"]]
    scores = {c: {"fold": i % 2, "dice": {"1": 0.5, "2": 0.5, "3": 0.5}, "dice_lcc": {}} for i, c in enumerate(ids)}
    _fake_cv(two_d, msd_dataset, {}, scores)
    find_best(str(tmp_path), all_folds=True)
    best = tmp_path / "best" / two_d.name
    assert sorted(p.name for p in (best / "models").iterdir()) == ["fold_1.pt", "model.pt"]
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(best / "configs" / "inference.json"))
    parser["bundle_root"] = str(best)
    inferer = parser.get_parsed_content("inferer")
    assert inferer.members[0].slice_axis == 2  # the 2d folds run slice by slice like the host
    out = inferer(torch.randn(1, 1, 48, 48, 8), parser.get_parsed_content("network_def").eval())
    assert out.shape == (1, 4, 48, 48, 8)


def test_find_best_needs_cross_validation(tmp_path: Path) -> None:
    with pytest.raises(LabelZooError, match="train-cv"):
        find_best(str(tmp_path))
