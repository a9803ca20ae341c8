"""Prompt validation and guidance encoding of the interactive bundle (labelzoo.interactive)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.apps.deepedit.transforms import AddGuidanceSignalDeepEditd
from monai.data import MetaTensor

from labelzoo.errors import LabelZooError
from labelzoo.interactive.prompts import MAX_POINTS, fill_lasso, parse_prompts
from labelzoo.interactive.transforms import NormalizeGuidanced, PromptGuidanced, SimulatePromptsd, map_points

LABELS = ["spleen", "liver"]
NAMES = {"spleen": 1, "liver": 6, "background": 0}
SHAPE = (20, 16, 12)


def test_clicks_per_label_and_foreground():
    p = parse_prompts({"spleen": [[1, 2, 3]], "background": [[0, 0, 0]], "foreground": [[5, 5, 5]], "label": "liver"},
                      LABELS, SHAPE)
    assert p.points["spleen"] == [(1, 2, 3)] and p.points["liver"] == [(5, 5, 5)]
    assert p.points["background"] == [(0, 0, 0)] and not p.empty
    assert parse_prompts({}, LABELS, SHAPE).empty


@pytest.mark.parametrize(("params", "needle"), [
    ({"spleen": [[1, 2]]}, "spleen[0]"),
    ({"spleen": [[1, 2, 99]]}, "outside the image"),
    ({"spleen": [[1.5, 2, 3]]}, "integer"),
    ({"spleen": [[True, 2, 3]]}, "integer"),
    ({"spleen": "[[1,2,3]]"}, "list"),
    ({"background": [[-1, 0, 0]]}, "outside"),
    ({"foreground": [[1, 1, 1]]}, "'label'"),
    ({"foreground": [[1, 1, 1]], "label": "$import os"}, "'label'"),
    ({"spleen": [[1, 1, 1]] * (MAX_POINTS + 1)}, "at most"),
    ({"boxes": [{"label": "kidney", "min": [0, 0, 0], "max": [1, 1, 1]}]}, "boxes[0]"),
    ({"boxes": [{"label": "liver", "min": [3, 0, 0], "max": [1, 1, 1]}]}, "must not exceed"),
    ({"boxes": {"label": "liver"}}, "list of objects"),
    ({"scribbles": [{"label": "liver", "points": [[0, 0, 50]]}]}, "scribbles[0].points[0]"),
    ({"lassos": [{"label": "liver", "axis": 2, "points": [[0, 0, 1], [3, 0, 1], [3, 3, 2]]}]}, "one slice"),
    ({"lassos": [{"label": "liver", "axis": 5, "points": [[0, 0, 1], [3, 0, 1], [3, 3, 1]]}]}, "axis"),
])
def test_bad_prompts_name_the_parameter(params, needle):
    with pytest.raises(LabelZooError, match=None) as e:
        parse_prompts(params, LABELS, SHAPE)
    assert needle in str(e.value)


def test_box_scribble_lasso():
    p = parse_prompts({"boxes": [{"label": "liver", "min": [1, 1, 4], "max": [5, 6, 4]}],
                       "scribbles": [{"label": "background", "points": [[0, 0, 0], [0, 1, 0]]}],
                       "lassos": [{"label": "spleen", "axis": 2,
                                   "points": [[2, 2, 3], [2, 6, 3], [6, 6, 3], [6, 2, 3]]}]},
                      LABELS, SHAPE)
    assert p.boxes["liver"] == [((1, 1, 4), (5, 6, 4))]
    assert len(p.points["background"]) == 2
    assert len(p.points["spleen"]) == 25 and all(q[2] == 3 for q in p.points["spleen"])
    assert len(fill_lasso([[0, 0, 0], [0, 2, 0], [2, 2, 0]], 2, (3, 3, 1))) == 6


def test_map_points_follows_the_affines():
    src = np.diag([-2.0, -2.0, 3.0, 1.0])
    src[:3, 3] = [40, 30, 0]
    dst = np.diag([1.0, 1.0, 1.0, 1.0])
    assert map_points(np.array([[0, 0, 0], [1, 2, 3]]), src, dst).tolist() == [[40, 30, 0], [38, 26, 9]]


def _image(affine: np.ndarray | None = None) -> MetaTensor:
    img = MetaTensor(torch.rand(1, *SHAPE), affine=torch.as_tensor(affine if affine is not None else np.eye(4)))
    img.meta["original_affine"] = np.eye(4)
    img.meta["spatial_shape"] = np.asarray(SHAPE)
    return img


def test_prompt_guidance_channels():
    d = PromptGuidanced("image", NAMES)({"image": _image(), "liver": [[3, 4, 5]], "background": [[0, 0, 0]],
                                         "boxes": [{"label": "spleen", "min": [1, 1, 1], "max": [2, 3, 4]}]})
    assert d["guidance"] == {"spleen": [], "liver": [[3, 4, 5]], "background": [[0, 0, 0]]}
    assert d["image"].shape == (5, *SHAPE)  # image + 2 box channels + 2 prior channels
    assert d["image"][1].sum() == 2 * 3 * 4 and d["image"][2].sum() == 0 and d["image"][3:].sum() == 0
    d = AddGuidanceSignalDeepEditd("image", number_intensity_ch=5)(d)
    assert d["image"].shape == (8, *SHAPE)
    assert d["image"][6].argmax() == np.ravel_multi_index((3, 4, 5), SHAPE)  # liver click channel peaks there
    assert float(d["image"][5].max()) == 0.0  # no spleen click


def test_prompt_guidance_maps_to_the_resampled_grid():
    half = np.diag([2.0, 2.0, 2.0, 1.0])  # the preprocessed grid has voxels twice as large
    img = MetaTensor(torch.rand(1, 10, 8, 6), affine=torch.as_tensor(half))
    img.meta["original_affine"] = np.eye(4)
    img.meta["spatial_shape"] = np.asarray(SHAPE)
    d = PromptGuidanced("image", NAMES)({"image": img, "spleen": [[8, 6, 4]]})
    assert d["guidance"]["spleen"] == [[4, 3, 2]]


def test_prompt_guidance_rejects_points_outside_the_original_image():
    with pytest.raises(LabelZooError, match="outside"):
        PromptGuidanced("image", NAMES)({"image": _image(), "spleen": [[20, 0, 0]]})


def test_simulated_prompts_from_ground_truth():
    label = np.zeros((1, *SHAPE), dtype=np.float32)
    label[0, 2:8, 2:8, 2:6] = 1
    label[0, 10:18, 4:12, 3:9] = 2
    sim = SimulatePromptsd("label", {"spleen": 1, "liver": 2, "background": 0}, max_clicks=2, box_prob=1.0,
                           scribble_prob=1.0, lasso_prob=1.0, jitter=0)
    sim.set_random_state(0)
    d = sim({"image": torch.rand(1, *SHAPE), "label": torch.as_tensor(label)})
    assert d["image"].shape == (5, *SHAPE) and not d["image"][3:].any()  # prior_prob 0: empty prior channels
    for c, value in ((1, 1), (2, 2)):
        box = np.asarray(d["image"][c]) > 0
        assert box.any() and (label[0][box] == value).mean() > 0.3  # the box surrounds its structure
    for name, value in (("spleen", 1), ("liver", 2), ("background", 0)):
        pts = json.loads(d["guidance"][name])
        assert pts and all(label[(0, *p)] == value for p in pts)  # every simulated point lies in its label


def test_normalize_guidance_after_collation():
    g = {"spleen": [[torch.tensor(1), torch.tensor(2), torch.tensor(3)]], "liver": None,
         "background": [[7, 1, 2, 3], [-1, -1, -1, -1]]}
    out = NormalizeGuidanced("label", NAMES)({"guidance": g, "label": np.zeros((1, 2, 2, 2))})["guidance"]
    assert json.loads(out["spleen"]) == [[1, 2, 3]] and json.loads(out["liver"]) == []
    assert json.loads(out["background"]) == [[1, 2, 3]]


def test_preprocess_cache_runs_the_prompt_independent_part_once(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "apps" / "labelzoo"))
    sys.modules.pop("lib", None)
    from lib.interactive import PreprocessCache

    image = tmp_path / "a.nii.gz"
    image.write_bytes(b"x")
    prompts = PromptGuidanced("image", NAMES)
    prefix, rest = PreprocessCache.split(["load", "scale", prompts, "signal"])
    assert prefix == ["load", "scale"] and rest == [prompts, "signal"]
    calls = []

    def run(d, ts):
        calls.append(ts)
        return {**d, "image": np.ones(3), "image_meta_dict": {"n": len(calls)}}

    cache = PreprocessCache(max_items=1)
    first = cache.run({"image": str(image), "spleen": [[1, 1, 1]]}, prefix, run)
    second = cache.run({"image": str(image), "spleen": [[2, 2, 2]]}, prefix, run)
    assert len(calls) == 1 and second["spleen"] == [[2, 2, 2]] and second["image_meta_dict"] == {"n": 1}
    second["image"][0] = 5  # a private copy: the cached volume is untouched
    assert cache.run({"image": str(image)}, prefix, run)["image"][0] == 1 and first["image"][0] == 1
    other = tmp_path / "b.nii.gz"
    other.write_bytes(b"y")
    cache.run({"image": str(other)}, prefix, run)  # evicts a.nii.gz (max_items=1)
    cache.run({"image": str(image)}, prefix, run)
    assert len(calls) == 3 and cache.hits == 2
    sys.modules.pop("lib", None)


def test_crop_to_prompts_and_back():
    from labelzoo.interactive.transforms import CropToPromptsd

    crop = CropToPromptsd("image", num_boxes=1, margin=(2, 2, 2))
    image = MetaTensor(torch.ones(2, *SHAPE))
    image[1] = 0
    d = {"image": image, "guidance": {"spleen": [[10, 10, 5]], "liver": json.dumps([[12, 11, 6]])}}
    assert crop(dict(d))["image"].shape == (2, *SHAPE)  # not asked for: whole volume
    out = crop({**d, "prompt_roi": True})
    assert out["image"].shape == (2, 7, 6, 6)  # [8, 15) x [8, 14) x [3, 9): the points +- 2
    assert out["guidance"] == {"spleen": [[2, 2, 2]], "liver": [[4, 3, 3]]}  # shifted to the crop
    back = crop.inverse(out)["image"]
    assert back.shape == (2, *SHAPE) and float(back[0].sum()) == 7 * 6 * 6
    assert float(back[0, 8:15, 8:14, 3:9].sum()) == 7 * 6 * 6
    out = crop({**d, "prompt_roi": True})  # the click maps made after the crop peak at the shifted points
    maps = AddGuidanceSignalDeepEditd("image", number_intensity_ch=2)(
        {**out, "guidance": {**out["guidance"], "background": []}})["image"]
    assert maps.shape == (5, 7, 6, 6) and maps[2].argmax() == np.ravel_multi_index((2, 2, 2), (7, 6, 6))


def _prior_file(tmp_path, array, dtype=np.uint8):
    import nibabel as nib

    path = tmp_path / "current.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=dtype), np.eye(4)), str(path))
    return str(path)


def test_prior_mask_fills_its_prior_channel_on_the_resampled_grid(tmp_path):
    current = np.zeros(SHAPE, dtype=np.uint8)
    current[4:12, 4:8, 2:6] = 2  # liver (the model's value 2 of [spleen, liver]) to refine
    current[0:2, 0:2, 0:2] = 1  # spleen: not chosen
    half = np.diag([2.0, 2.0, 2.0, 1.0])
    img = MetaTensor(torch.rand(1, 10, 8, 6), affine=torch.as_tensor(half))
    img.meta["original_affine"] = np.eye(4)
    img.meta["spatial_shape"] = np.asarray(SHAPE)
    prior = _prior_file(tmp_path, current)
    d = PromptGuidanced("image", NAMES)({"image": img, "prior": ["liver"], "label_file": prior})
    assert d["image"].shape == (5, 10, 8, 6) and d["prompt_count"] == 1
    liver = np.asarray(d["image"][4])
    assert liver[2:6, 2:4, 1:3].all() and liver.sum() == 4 * 2 * 2 and not d["image"][3].any()


@pytest.mark.parametrize("params, array, needle", [
    ({"prior": True}, None, "upload the current mask"),
    ({"prior": ["heart"]}, np.zeros(SHAPE, np.int16), "'prior'"),
    ({"prior": True}, np.zeros((4, 4, 4), np.int16), "shape"),
    ({"prior": True}, np.full(SHAPE, 7), "values [7]"),
    ({"prior": True}, np.zeros(SHAPE, np.float32), "integers"),
])
def test_bad_prior_is_refused_naming_it(tmp_path, params, array, needle):
    from labelzoo.interactive.prompts import load_prior, prior_labels

    if array is not None:
        dtype = np.float32 if array.dtype.kind == "f" and array.dtype == np.float32 else np.int16
        params = {**params, "label_file": _prior_file(tmp_path, array, dtype)}
    with pytest.raises(LabelZooError) as e:
        chosen = prior_labels(params, LABELS)
        load_prior(params["label_file"], LABELS, chosen, SHAPE)
    assert needle in str(e.value)


def test_simulated_prior_masks_are_spoiled_ground_truth():
    label = np.zeros((1, *SHAPE), dtype=np.float32)
    label[0, 4:16, 3:13, 2:10] = 1
    sim = SimulatePromptsd("label", {"spleen": 1, "background": 0}, max_clicks=0, box_prob=0.0, scribble_prob=0.0,
                           lasso_prob=0.0, prior_prob=1.0)
    overlaps = []
    for seed in range(6):
        sim.set_random_state(seed)
        prior = np.asarray(sim({"image": torch.rand(1, *SHAPE), "label": torch.as_tensor(label)})["image"][2]) > 0
        truth = label[0] > 0
        overlaps.append(2 * (prior & truth).sum() / (prior.sum() + truth.sum()))
        assert not np.array_equal(prior, truth)  # a spoiled mask, not the answer
    assert 0.3 < np.mean(overlaps) < 1.0


def test_simulated_corrective_clicks_lie_on_the_prior_errors():
    label = np.zeros((1, *SHAPE), dtype=np.float32)
    label[0, 4:16, 3:13, 2:10] = 1
    sim = SimulatePromptsd("label", {"spleen": 1, "background": 0}, max_clicks=0, box_prob=0.0, scribble_prob=0.0,
                           lasso_prob=0.0, prior_prob=1.0, corrective_clicks=3)
    truth = label[0] > 0
    counts = []
    for seed in range(8):
        sim.set_random_state(seed)
        d = sim({"image": torch.rand(1, *SHAPE), "label": torch.as_tensor(label)})
        prior = np.asarray(d["image"][2]) > 0
        fg, bg = json.loads(d["guidance"]["spleen"]), json.loads(d["guidance"]["background"])
        assert all(truth[tuple(p)] and not prior[tuple(p)] for p in fg)  # foreground clicks: missed voxels
        assert all(prior[tuple(p)] and not truth[tuple(p)] for p in bg)  # background clicks: false voxels
        counts.append(len(fg) + len(bg))
    assert 1 <= min(counts) and max(counts) <= 3


def test_crop_to_prompts_grows_to_the_patch_size_inside_the_image():
    from labelzoo.interactive.transforms import CropToPromptsd

    crop = CropToPromptsd("image", num_boxes=1, margin=(2, 2, 2), min_size=(10, 30, 8))
    image = MetaTensor(torch.ones(2, *SHAPE))
    image[1] = 0
    out = crop({"image": image, "guidance": {"spleen": [[18, 1, 5]]}, "prompt_roi": True})
    assert out["image"].shape == (2, 10, 16, 8)  # grown to the patch size, the image's size at most
    lo = np.asarray([10, 0, 2])  # [10, 20) x [0, 16) x [2, 10): centred, shifted back inside the image
    assert out["guidance"] == {"spleen": (np.asarray([[18, 1, 5]]) - lo).tolist()}
    back = crop.inverse(out)["image"]
    assert back.shape == (2, *SHAPE) and float(back[0, 10:20, :, 2:10].sum()) == 10 * 16 * 8


def test_prior_from_prediction_fills_the_prior_channels():
    from labelzoo.interactive.transforms import PriorFromPredictiond

    pred = np.zeros((1, *SHAPE), dtype=np.int64)
    pred[0, 2:8, 2:8, 2:6] = 1  # spleen
    pred[0, 10:18, 4:12, 3:9] = 2  # liver (normalised value 2)
    image = np.random.default_rng(0).random((8, *SHAPE)).astype(np.float32)  # image, 2 boxes, 2 priors, 3 clicks
    t = PriorFromPredictiond("image", NAMES, prob=1.0)
    out = t({"image": image.copy(), "pred": pred})["image"]
    np.testing.assert_array_equal(out[3], pred[0] == 1)
    np.testing.assert_array_equal(out[4], pred[0] == 2)
    np.testing.assert_array_equal(out[[0, 1, 2, 5, 6, 7]], image[[0, 1, 2, 5, 6, 7]])  # the rest untouched
    never = PriorFromPredictiond("image", NAMES, prob=0.0)
    np.testing.assert_array_equal(never({"image": image.copy(), "pred": pred})["image"], image)
    with pytest.raises(LabelZooError, match="prior channels"):
        t({"image": image[:3].copy(), "pred": pred})


# ------------------------------------------------------------------------------ 2D images and slice-wise models

def test_prompts_on_a_2d_image_and_for_a_slice_wise_model():
    lasso = {"label": "liver", "points": [[1, 1], [1, 3], [3, 3]]}
    p = parse_prompts({"spleen": [[1, 2], [3, 4, 0]], "lassos": [lasso],
                       "boxes": [{"label": "liver", "min": [0, 0], "max": [4, 5]}]}, LABELS, (8, 8))
    assert p.points["spleen"] == [(1, 2), (3, 4)]  # [i, j, 0]: Slicer's one-slice volume of a 2D image
    assert (2, 2) in p.points["liver"] and p.boxes["liver"] == [((0, 0), (4, 5))]
    with pytest.raises(LabelZooError, match=r"spleen\[0\]"):
        parse_prompts({"spleen": [[1, 2, 1]]}, LABELS, (8, 8))
    assert len(fill_lasso([[1, 1], [1, 3], [3, 3], [3, 1]], 2, (5, 5))) == 9
    box = {"label": "liver", "min": [1, 1, 5], "max": [9, 9, 5]}  # on a slice normal to axis 2, or 3D: taken
    assert parse_prompts({"boxes": [box, {**box, "max": [9, 9, 7]}]}, LABELS, SHAPE, slice_axis=2).boxes["liver"]
    with pytest.raises(LabelZooError, match=r"boxes\[0\].*slice by slice along axis 2.*flat along axis 0"):
        parse_prompts({"boxes": [{"label": "liver", "min": [4, 1, 1], "max": [4, 9, 9]}]}, LABELS, SHAPE, slice_axis=2)


def test_2d_simulated_prompts_and_guidance():
    label = np.zeros((1, 20, 16), dtype=np.float32)
    label[0, 2:8, 2:8] = 1
    label[0, 10:18, 4:12] = 2
    sim = SimulatePromptsd("label", {"spleen": 1, "liver": 2, "background": 0}, max_clicks=2, box_prob=1.0,
                           scribble_prob=1.0, lasso_prob=1.0, prior_prob=1.0, corrective_clicks=2, jitter=0)
    sim.set_random_state(0)
    d = sim({"image": torch.rand(1, 20, 16), "label": torch.as_tensor(label)})
    assert d["image"].shape == (5, 20, 16) and d["image"][1:].any()
    for c, value in ((1, 1), (2, 2)):
        assert (label[0][np.asarray(d["image"][c]) > 0] == value).mean() > 0.3  # each 2D box surrounds its structure
    d = NormalizeGuidanced("label", {"spleen": 1, "liver": 2, "background": 0})({**d, "label": label})
    for name in ("spleen", "liver"):
        pts = json.loads(d["guidance"][name])
        assert pts and all(len(p) == 2 for p in pts)
    out = AddGuidanceSignalDeepEditd("image", sigma=[1.0, 1.0], number_intensity_ch=5)(d)["image"]
    assert out.shape == (8, 20, 16) and float(out[5].max()) == pytest.approx(1.0)
