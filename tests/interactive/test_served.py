"""The interactive bundle through the live server, with MONAI Label's client (the Slicer plugin's path).

Default suite: the shrunk bundle (smoke overrides, random weights) is served as a MONAI Label DeepEdit model;
automatic, click, box, scribble and lasso requests answer a label map of the image's geometry, through an
image id and through a session (the image sent once); malformed prompts are refused with 422 naming the
parameter. Slow: a tiny model trained for a few epochs on synthetic CT answers a foreground click in a missed
structure with a higher Dice, and a background click on a false positive removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monailabel.client.client import MONAILabelClientException

from labelzoo.data import build_sample_studies
from labelzoo.interactive.simulate import dice, error_click
from tests.app.conftest import REPO_ROOT, shrink_bundle
from tests.slicer.conftest import MODULE_DIR  # noqa: F401  (puts LabelZooLib on sys.path)

pytestmark = pytest.mark.server

NAME = "abdomen_ct_dynunet_interactive_annotation"
VALUES = {"spleen": 1, "left kidney": 2, "liver": 3}  # the bundle's output values
GT_VALUES = {"spleen": 1, "left kidney": 3, "liver": 6}  # the sample data's (BTCV numbering)


def _serve(server_factory, tmp_path: Path, shape=(48, 48, 32), weights: Path | None = None):
    studies = build_sample_studies(tmp_path / "studies", n_images=2, n_labeled=2, shape=shape)
    bundles = tmp_path / "bundles"
    dst = shrink_bundle(REPO_ROOT / "bundles" / NAME, bundles)
    if weights is not None:
        (dst / "models").mkdir(exist_ok=True)
        shutil.copy(weights, dst / "models" / "model.pt")
    server = server_factory(studies, conf=f"models={NAME},bundles={bundles},skip_scoring=true,skip_trainers=true")
    return server, studies


def _label(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj).astype(int)


def test_served_as_deepedit_and_answers_prompts(server_factory, tmp_path: Path) -> None:
    server, studies = _serve(server_factory, tmp_path)
    client = server.client()
    model = client.info()["models"][NAME]
    assert model["type"] == "deepedit"
    assert model["labels"] == {"spleen": 1, "left kidney": 2, "liver": 3, "background": 0}

    image_id = "case_000"
    image = nib.load(studies / f"{image_id}.nii.gz")
    requests = [{}, {"spleen": [[10, 12, 8]], "background": [[1, 1, 1]]},
                {"foreground": [[20, 20, 10]], "label": "liver"},
                {"boxes": [{"label": "liver", "min": [5, 5, 5], "max": [30, 30, 20]}]},
                {"scribbles": [{"label": "left kidney", "points": [[20, 20, 10], [21, 20, 10]]}]},
                {"lassos": [{"label": "spleen", "axis": 2, "points": [[5, 5, 9], [5, 15, 9], [15, 15, 9]]}]}]
    for params in requests:
        label_file, _ = client.infer(NAME, image_id, params)
        pred = nib.load(label_file)
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-4)
        assert set(np.unique(_label(label_file)).tolist()) <= {0, 1, 2, 3}

    # LabelZoo's Slicer logic: prompts per segment, request, answer merged by its geometry, undo
    from LabelZooLib import LabelZooClient, PromptBook, merge_region, merge_segment, resample_to

    lib = LabelZooClient(server.url)
    book = PromptBook()
    book.add("Liver", "foreground", [[20, 20, 10]])
    book.add("Liver", "box", [[5, 5, 10], [30, 30, 10]])
    answer = lib.infer(NAME, image_id, book.params("Liver"), dest_dir=tmp_path / "lib")
    answer_img = nib.load(answer.label_path)
    on_grid = resample_to(np.asarray(answer_img.dataobj), answer_img.affine, image.affine, image.shape)
    current = np.zeros(image.shape, dtype=np.uint8)
    current[0, 0, 0] = 9  # another segment the annotator drew
    merged = merge_segment(current, on_grid, answer_value=VALUES["liver"], segment_value=6)
    assert merged[0, 0, 0] == 9 or on_grid[0, 0, 0] == VALUES["liver"]
    assert ((merged == 6) == (on_grid == VALUES["liver"])).all()
    assert book.undo("Liver").kind == "box" and "boxes" not in book.params("Liver")

    # the module's interactive path: scribble + lasso drawn, refine the current mask, the request off the
    # caller's thread, only the prompt region back, merged at its place by its geometry
    from LabelZooLib import BackgroundCall, lasso_contour, prior_labelmap, stroke_voxels

    book.add("Liver", "scribble", stroke_voxels([[18, 18, 10], [24, 22, 10]]))
    lasso, axis = lasso_contour([[15, 15, 12.2], [15, 25, 11.8], [25, 25, 12], [25, 15, 12]])
    book.add("Liver", "lasso", lasso, axis=axis)
    book.set_refine("Liver", True)
    segment = np.zeros(image.shape, bool)
    segment[12:28, 12:28, 8:14] = True  # the annotator's current liver
    prior_path = tmp_path / "prior.nii.gz"
    nib.save(nib.Nifti1Image(prior_labelmap(segment, VALUES["liver"]), image.affine), str(prior_path))
    params = {**book.params("Liver"), "result_region": True}
    assert params["prior"] == ["liver"] and params["scribbles"] and params["lassos"][0]["axis"] == 2
    call = BackgroundCall(lib.infer, NAME, image_id, params=params, label_path=prior_path,
                          dest_dir=tmp_path / "lib2", what="redrawing liver").start()
    assert call.wait(120)
    answer = call.result()
    region = answer.params["result_region"]
    answer_img = nib.load(answer.label_path)
    assert answer_img.shape == tuple(np.asarray(region["max"]) - region["min"] + 1)
    current = np.where(segment, 6, 0).astype(np.uint8)
    current[0, 0, 0] = 9
    merged = merge_region(current, np.asarray(answer_img.dataobj), answer_img.affine, image.affine, VALUES["liver"], 6)
    inside = tuple(slice(a, b + 1) for a, b in zip(region["min"], region["max"], strict=True))
    outside = np.ones(image.shape, bool)
    outside[inside] = False
    assert (merged[outside] == current[outside]).all()
    assert merged[0, 0, 0] == 9 or not outside[0, 0, 0]  # another segment stays unless the region redraws it

    # prediction on a region around the prompts: same geometry, background far from them
    label_file, _ = client.infer(NAME, image_id, {"spleen": [[10, 12, 8]], "prompt_roi": True})
    assert nib.load(label_file).shape == image.shape
    assert not _label(label_file)[45:, 45:, :].any()

    full = _label(label_file)

    # "return only what changed": the prompt region alone, with its own geometry, merged by it
    session = client.create_session(str(studies / f"{image_id}.nii.gz"))["session_id"]
    label_file, params = client.infer(NAME, "", {"spleen": [[10, 12, 8]], "result_region": True},
                                      session_id=session)
    params = json.loads(params) if isinstance(params, str) else params
    region = params["result_region"]
    lo, hi = np.asarray(region["min"]), np.asarray(region["max"])
    answer = nib.load(label_file)
    assert region["shape"] == list(image.shape) and answer.shape == tuple(hi - lo + 1) and answer.shape < image.shape
    shift = np.eye(4)
    shift[:3, 3] = lo
    np.testing.assert_allclose(answer.affine, image.affine @ shift, atol=1e-4)
    box = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    assert (np.asarray(answer.dataobj).astype(int) == full[box]).mean() > 0.95  # the whole-volume answer, cropped
    current = np.full(image.shape, 9, dtype=np.uint8)  # another segment everywhere
    merged = merge_region(current, np.asarray(answer.dataobj), answer.affine, image.affine, VALUES["spleen"], 1)
    outside = np.ones(image.shape, bool)
    outside[box] = False
    assert (merged[outside] == 9).all()
    assert ((merged[box] == 1) == (np.asarray(answer.dataobj) == VALUES["spleen"])).all()
    label_file, _ = client.infer(NAME, "", {"spleen": [[10, 12, 8]]}, session_id=session)
    assert nib.load(label_file).shape == image.shape
    client.remove_session(session)

    # refine a current mask: the annotator's liver (model value 3) uploaded as the label file, used as prior
    current = np.zeros(image.shape, dtype=np.uint8)
    current[10:30, 10:30, 5:20] = VALUES["liver"]
    prior_file = tmp_path / "current.nii.gz"
    nib.save(nib.Nifti1Image(current, image.affine), str(prior_file))
    label_file, _ = client.infer(NAME, image_id, {"prior": ["liver"], "liver": [[20, 20, 10]]},
                                 label_in=str(prior_file))
    assert nib.load(label_file).shape == image.shape
    wrong = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(current[:-1], image.affine), str(wrong))
    for params, upload, needle in (({"prior": True}, wrong, "shape"), ({"prior": True}, None, "upload")):
        with pytest.raises(MONAILabelClientException) as e:
            client.infer(NAME, image_id, params, label_in=str(upload) if upload else None)
        assert "Status: 422" in str(e.value.msg) and needle in str(e.value.msg)

    bad = [({"spleen": [[10, 12, 99]]}, "outside the image"), ({"spleen": [[1, 2]]}, "spleen[0]"),
           ({"background": "$import os"}, "background"), ({"foreground": [[1, 1, 1]], "label": "heart"}, "label"),
           ({"boxes": [{"label": "liver", "min": [9, 9, 9], "max": [1, 1, 1]}]}, "boxes[0]")]
    for params, needle in bad:
        with pytest.raises(MONAILabelClientException) as e:
            client.infer(NAME, image_id, params)
        assert "Status: 422" in str(e.value.msg) and needle in str(e.value.msg), params


def _train_tiny(tmp_path: Path, epochs: int) -> Path:
    """Train the bundle (small network) on synthetic CT with ``python -m monai.bundle run``."""
    data = build_sample_studies(tmp_path / "msd", n_images=8, n_labeled=8, shape=(64, 64, 40),
                                spacing=(2.25, 2.25, 3.2), layout="msd")
    bundle = tmp_path / "train_bundle"
    shutil.copytree(REPO_ROOT / "bundles" / NAME, bundle, ignore=shutil.ignore_patterns("models", "eval"))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "train.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(data), "--max_epochs", str(epochs),
           "--val_interval", "2", "--max_interactions", "2", "--filters", "[8,16,32,64]",
           "--pixdim", "[2.25,2.25,3.2]", "--roi_size", "[64,64,40]"]
    subprocess.run(cmd, check=True, cwd=bundle, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    weights = bundle / "models" / "model.pt"
    assert weights.is_file()
    return weights


@pytest.mark.slow
def test_clicks_fix_a_trained_model(server_factory, tmp_path: Path) -> None:
    epochs = int(os.environ.get("LABELZOO_INTERACTIVE_EPOCHS", "14"))
    weights = _train_tiny(tmp_path, epochs)
    server, studies = _serve(server_factory, tmp_path, shape=(64, 64, 40), weights=weights)
    # serve the trained model at the training resolution
    cfg = tmp_path / "bundles" / NAME / "configs" / "inference.json"
    conf = json.loads(cfg.read_text())
    assert conf["filters"] == [8, 16, 32, 64]
    client = server.client()
    gt = _label(str(studies / "labels" / "final" / "case_000.nii.gz"))
    improved = removed = 0
    for name, value in VALUES.items():
        truth = gt == GT_VALUES[name]
        auto = _label(client.infer(NAME, "case_000", {})[0]) == value
        missed = truth & ~auto
        if missed.sum() > 20:
            point, _ = error_click(auto & truth, truth)  # centre of the largest missed region
            after = _label(client.infer(NAME, "case_000", {name: [point]})[0]) == value
            improved += dice(after, truth) > dice(auto, truth)
        false = auto & ~truth
        if false.sum() > 20:
            point, _ = error_click(auto, auto & truth)  # centre of the largest false positive
            after = _label(client.infer(NAME, "case_000", {"background": [point]})[0]) == value
            removed += after[tuple(point)] == 0 and (after & false).sum() < false.sum()
    assert improved + removed >= 1
