"""``labelzoo plan ... --interactive``: the interactive variant of a planned configuration.

Default suite: the variant passes ``labelzoo bundle verify`` without the runs, its training pipeline makes the
guidance channels from simulated prompts, its network takes them, and the app serves it as a MONAI Label
DeepEdit model answering clicks (a real server). The ``2d`` configuration's variant: 2D guidance channels in
training (DeepEdit's click simulation on 2D slices), slice-by-slice inference with each prompt on its slice (a
click changes the answer on its slice and nowhere else, through the live server too), and on 2D data 2D prompts.
Slow: the click-simulating smoke runs (train with DeepEdit's ``Interaction``, evaluate, infer) through
``python -m monai.bundle run``, and the 2D-data variant through the live server.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from labelzoo.planning.commands import run as plan_run

NAME = "labelzoosyntheticct_ct_nnunet3dfullres_interactive_annotation"


def _plan_variant(msd_dataset: Path, tmp_path_factory: pytest.TempPathFactory, configuration: str, name: str) -> Path:
    """Plan ``configuration`` of the sample dataset with ``--interactive``; the interactive variant's folder."""
    out = tmp_path_factory.mktemp(f"plan-interactive-{configuration}") / "planned"
    text = plan_run(str(msd_dataset), out=str(out), configurations=configuration, interactive=True)
    assert name in text
    return out / name


@pytest.fixture(scope="module")
def variant(msd_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _plan_variant(msd_dataset, tmp_path_factory, "3d_fullres", NAME)


def test_variant_passes_verify_and_declares_guidance(variant: Path) -> None:
    from labelzoo.bundle.verify import format_report, verify_bundle
    from labelzoo.discovery import read_bundle_info

    problems = verify_bundle(variant, run=False)
    assert not problems, format_report(variant, problems)
    info = read_bundle_info(variant)
    assert info.guidance_channels == 3 * 3 + 1 and info.channels == 1  # 3 labels: box, prior, clicks; background
    meta = json.loads((variant / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["channel_def"]["10"] == "clicks background"


def test_variant_training_pipeline_makes_guidance_channels(variant: Path) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(variant / "configs" / "train.json"))
    parser["bundle_root"], parser["cache_rate"], parser["num_workers"] = str(variant), 0.0, 0
    parser["box_prob"] = parser["prior_prob"] = 1.0
    data = parser.get_parsed_content("train_datalist")
    sample = parser.get_parsed_content("train#preprocessing")(data[0])
    sample = sample[0] if isinstance(sample, list) else sample
    patch = parser.get_parsed_content("patch_size")
    assert tuple(sample["image"].shape) == (11, *patch)
    assert float(sample["image"][1:4].sum()) > 0 and float(sample["image"][4:7].sum()) > 0  # boxes and priors
    assert parser.get_parsed_content("train#interaction").max_interactions == 3
    # the click Gaussian is as wide in mm as the hand-written bundle's, in voxels of the planned spacing
    spacing = parser.get_parsed_content("spacing")
    sigma = parser.get_parsed_content("guidance_sigma")
    assert sigma == pytest.approx([4.5 / s for s in spacing])
    infer = ConfigParser()
    infer.read_config(str(variant / "configs" / "inference.json"))
    assert infer.get_parsed_content("guidance_sigma") == pytest.approx(sigma)
    net = parser.get_parsed_content("network_def")
    out = net.eval()(sample["image"][None].float())
    assert out.shape == (1, 4, *patch)  # one head (no deep supervision), 4 classes


def _serve_on_sample_image(variant: Path, name: str, server_factory, tmp_path: Path):
    """A live server (inference only) serving ``variant`` as ``name`` on one unlabelled 48x48x32 sample image;
    its client and the studies folder."""
    import shutil

    from labelzoo.data import build_sample_studies

    bundles = tmp_path / "bundles"
    shutil.copytree(variant, bundles / name)
    studies = build_sample_studies(tmp_path / "studies", n_images=1, n_labeled=0, shape=(48, 48, 32))
    server = server_factory(studies, conf=f"models={name},bundles={bundles},skip_scoring=true,skip_trainers=true")
    return server.client(), studies


@pytest.mark.server
def test_variant_is_served_as_deepedit_and_answers_clicks(variant: Path, server_factory, tmp_path: Path) -> None:
    client, studies = _serve_on_sample_image(variant, NAME, server_factory, tmp_path)
    model = client.info()["models"][NAME]
    assert model["type"] == "deepedit" and model["labels"]["background"] == 0
    image = nib.load(studies / "case_000.nii.gz")
    label_file, params = client.infer(NAME, "case_000", {"liver": [[20, 20, 10]], "result_region": True})
    params = json.loads(params) if isinstance(params, str) else params
    lo, hi = np.asarray(params["result_region"]["min"]), np.asarray(params["result_region"]["max"])
    assert nib.load(label_file).shape == tuple(hi - lo + 1) and params["result_region"]["shape"] == list(image.shape)


@pytest.mark.slow
def test_variant_smoke_runs(variant: Path, tmp_path: Path) -> None:
    from labelzoo.bundle.verify import format_report, verify_bundle

    problems = verify_bundle(variant, run=True, workdir=tmp_path)
    assert not problems, format_report(variant, problems)


# ------------------------------------------------------------------------------------------- the 2d configuration

NAME_2D = "labelzoosyntheticct_ct_nnunet2d_interactive_annotation"


@pytest.fixture(scope="module")
def variant_2d(msd_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _plan_variant(msd_dataset, tmp_path_factory, "2d", NAME_2D)


def _inference(variant: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(variant / "configs" / "inference.json"))
    parser["bundle_root"] = str(variant)
    return parser


def _guided_slices(image, axis: int = 2) -> list[int]:
    """Slices (normal to ``axis``) where any guidance channel (every channel after the image's) is non-zero."""
    guidance = np.asarray(image[1:]).astype(bool).any(0)
    other = tuple(a for a in range(3) if a != axis)
    return np.nonzero(guidance.any(axis=other))[0].tolist()


def test_2d_variant_passes_verify_and_is_slice_wise(variant_2d: Path) -> None:
    from labelzoo.bundle.verify import format_report, verify_bundle
    from labelzoo.discovery import read_bundle_info

    problems = verify_bundle(variant_2d, run=False)
    assert not problems, format_report(variant_2d, problems)
    info = read_bundle_info(variant_2d)
    # a 2D network (2D patch) run slice by slice on volumes: the app takes 3D images and 3D prompts for it
    assert info.guidance_channels == 3 * 3 + 1 and info.slice_axis == 2 and info.spatial_dims == 3
    meta = json.loads((variant_2d / "configs" / "metadata.json").read_text())
    assert len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"]) == 2
    assert meta["labelzoo"] == {"slice_axis": 2}


def test_2d_variant_training_makes_2d_guidance_channels(variant_2d: Path) -> None:
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(str(variant_2d / "configs" / "train.json"))
    parser["bundle_root"], parser["cache_rate"], parser["num_workers"] = str(variant_2d), 0.0, 0
    parser["box_prob"] = parser["prior_prob"] = parser["scribble_prob"] = 1.0
    crop = next(i for i, t in enumerate(parser["train#random_transforms"])
                if t["_target_"] == "RandCropByLabelClassesd")
    parser[f"train#random_transforms#{crop}#ratios"] = [0, 1, 1, 1]  # a slice through a structure
    data = parser.get_parsed_content("train_datalist")
    sample = parser.get_parsed_content("train#preprocessing")(data[0])
    sample = sample[0] if isinstance(sample, list) else sample
    patch = parser.get_parsed_content("patch_size")
    assert len(patch) == 2 and tuple(sample["image"].shape) == (11, *patch)  # 2D: image + 10 guidance channels
    image = np.asarray(sample["image"])
    assert image[1:4].sum() > 0 and image[4:7].sum() > 0 and image[7:].sum() > 0  # boxes, priors, clicks
    points = [p for v in sample["guidance"].values() for p in json.loads(v)]
    assert points and all(len(p) == 2 for p in points)  # [i, j] on the slice
    sigma = parser.get_parsed_content("guidance_sigma")
    assert sigma == pytest.approx([4.5 / s for s in parser.get_parsed_content("spacing")])
    # DeepEdit's click simulation on the 2D sample (what Interaction runs between iterations): a missed structure
    # gets clicks of 2D points and the image keeps its 11 channels
    sample["pred"] = np.zeros_like(np.asarray(sample["label"]))
    sample["probability"] = 1.0
    sample["label_names"] = parser.get_parsed_content("label_names")
    sample["image"] = np.asarray(sample["image"])
    clicked = Compose(parser.get_parsed_content("click_transforms"))(sample)
    assert tuple(clicked["image"].shape) == (11, *patch)
    assert all(len(p) == 2 for v in clicked["guidance"].values() for p in json.loads(v))
    net = parser.get_parsed_content("network_def")
    assert net.eval()(torch.as_tensor(clicked["image"])[None].float()).shape == (1, 4, *patch)


def test_2d_variant_inference_puts_each_prompt_on_its_slice(variant_2d: Path, msd_dataset: Path) -> None:
    from labelzoo.errors import LabelZooError

    parser = _inference(variant_2d)
    sigma = parser.get_parsed_content("guidance_sigma")
    assert sigma[2] < 0.01 and sigma[:2] == pytest.approx([4.5 / s for s in parser.get_parsed_content("spacing")])
    pre = parser.get_parsed_content("preprocessing")
    image = str(sorted((msd_dataset / "imagesTr").glob("*.nii.gz"))[0])
    assert _guided_slices(pre({"image": image})["image"]) == []
    assert _guided_slices(pre({"image": image, "liver": [[20, 20, 10]]})["image"]) == [10]
    two = pre({"image": image, "liver": [[20, 20, 10]], "background": [[5, 5, 25]]})["image"]
    assert _guided_slices(two) == [10, 25]
    box2d = {"label": "liver", "min": [5, 5, 12], "max": [30, 30, 12]}
    assert _guided_slices(pre({"image": image, "boxes": [box2d]})["image"]) == [12]
    box3d = {"label": "liver", "min": [5, 5, 12], "max": [30, 30, 14]}  # a box on each slice it spans
    assert _guided_slices(pre({"image": image, "boxes": [box3d]})["image"]) == [12, 13, 14]
    region = pre({"image": image, "boxes": [box3d], "result_region": True})["image"]
    assert region.shape[-1] == 3 and _guided_slices(region) == [0, 1, 2]  # the prompt region: its slices
    with pytest.raises(RuntimeError) as e:  # MONAI's Compose wraps the transform's error
        pre({"image": image, "boxes": [{"label": "liver", "min": [20, 5, 5], "max": [20, 30, 30]}]})
    assert isinstance(e.value.__cause__, LabelZooError)
    assert "boxes[0]" in str(e.value.__cause__) and "slice by slice along axis 2" in str(e.value.__cause__)
    # the (random) network's answer changes on the clicked slice and nowhere else
    torch.manual_seed(0)
    net, inferer = parser.get_parsed_content("network_def").eval(), parser.get_parsed_content("inferer")
    with torch.no_grad():
        auto, click = (inferer(pre({"image": image, **p})["image"][None].float(), net).argmax(1)[0].numpy()
                       for p in ({}, {"liver": [[20, 20, 10]]}))
    changed = np.nonzero((auto != click).any(axis=(0, 1)))[0].tolist()
    assert changed == [10]


@pytest.mark.server
def test_2d_variant_is_served_as_deepedit_and_answers_a_click_on_its_slice(variant_2d: Path, server_factory,
                                                                          tmp_path: Path) -> None:
    from monailabel.client.client import MONAILabelClientException

    client, studies = _serve_on_sample_image(variant_2d, NAME_2D, server_factory, tmp_path)
    model = client.info()["models"][NAME_2D]
    assert model["type"] == "deepedit" and model["labels"]["background"] == 0 and model["dimension"] == 3
    image = nib.load(studies / "case_000.nii.gz")
    answers = {}
    for name, params in (("auto", {}), ("click", {"liver": [[20, 20, 9]]})):
        label_file, _ = client.infer(NAME_2D, "case_000", params)
        answers[name] = np.asarray(nib.load(label_file).dataobj)
        assert answers[name].shape == image.shape
    # the click guides slice 9: the answer changes there and every other slice keeps the automatic answer
    assert np.nonzero((answers["auto"] != answers["click"]).any(axis=(0, 1)))[0].tolist() == [9]
    label_file, params = client.infer(NAME_2D, "case_000", {"liver": [[20, 20, 9]], "result_region": True})
    params = json.loads(params) if isinstance(params, str) else params
    assert params["result_region"]["min"][2] == params["result_region"]["max"][2] == 9  # the clicked slice only
    region = np.asarray(nib.load(label_file).dataobj)
    lo, hi = params["result_region"]["min"], params["result_region"]["max"]
    assert region.reshape(-1)[:1].size and region.shape[:2] == (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1)
    with pytest.raises(MONAILabelClientException) as e:  # a 2D box across the model's slices: 422, named
        client.infer(NAME_2D, "case_000", {"boxes": [{"label": "liver", "min": [20, 5, 5], "max": [20, 30, 30]}]})
    assert "Status: 422" in str(e.value.msg) and "boxes[0]" in str(e.value.msg)


@pytest.mark.slow
def test_2d_variant_smoke_runs(variant_2d: Path, tmp_path: Path) -> None:
    from labelzoo.bundle.verify import format_report, verify_bundle

    problems = verify_bundle(variant_2d, run=True, workdir=tmp_path)
    assert not problems, format_report(variant_2d, problems)


# ------------------------------------------------------------------------------------------- 2D data (one slice)

def _disc_images(folder: Path, n: int, seed: int = 0, labels: Path | None = None) -> None:
    """2D NIfTI images (64 x 64, 0.5 mm pixels) of a bright disc (label 1: "lung") in noise."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:64, :64]
    for i in range(n):
        centre = rng.randint(20, 44, 2)
        lab = (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) < 100).astype(np.uint8)
        img = (rng.normal(0, 1, (64, 64)) + 3 * lab).astype(np.float32)
        affine = np.diag([0.5, 0.5, 1.0, 1.0])
        name = f"xray_{i:03d}"
        nib.save(nib.Nifti1Image(img, affine), folder / (f"{name}_0000.nii.gz" if labels else f"{name}.nii.gz"))
        if labels is not None:
            nib.save(nib.Nifti1Image(lab, affine), labels / f"{name}.nii.gz")


@pytest.fixture(scope="module")
def variant_2d_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xray") / "Task01_Xray"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    _disc_images(root / "imagesTr", 4, labels=root / "labelsTr")
    (root / "dataset.json").write_text(json.dumps({"name": "Xray", "channel_names": {"0": "xray"},
                                                   "labels": {"background": 0, "lung": 1}, "numTraining": 4,
                                                   "file_ending": ".nii.gz"}))
    out = root.parent / "planned"
    text = plan_run(str(root), out=str(out), interactive=True)
    assert "xray_xray_nnunet2d_interactive_annotation" in text  # 2D data: the 2d configuration alone
    return out / "xray_xray_nnunet2d_interactive_annotation"


def test_2d_data_variant_takes_2d_prompts(variant_2d_data: Path) -> None:
    from labelzoo.bundle.verify import format_report, verify_bundle
    from labelzoo.discovery import read_bundle_info

    problems = verify_bundle(variant_2d_data, run=False)
    assert not problems, format_report(variant_2d_data, problems)
    info = read_bundle_info(variant_2d_data)
    assert info.spatial_dims == 2 and info.slice_axis is None and info.guidance_channels == 3 * 1 + 1
    parser = _inference(variant_2d_data)
    pre, post = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("postprocessing")
    image = str(sorted((variant_2d_data.parent.parent / "Task01_Xray" / "imagesTr").glob("*.nii.gz"))[0])
    auto = pre({"image": image})["image"]
    assert auto.shape == (5, 64, 64) and not np.asarray(auto[1:]).any()
    click = np.asarray(pre({"image": image, "lung": [[20, 30]]})["image"])
    # Slicer shows a 2D image as a one-slice volume: [i, j, 0] is the same click
    np.testing.assert_array_equal(click, np.asarray(pre({"image": image, "lung": [[20, 30, 0]]})["image"]))
    assert click[3].max() == pytest.approx(1.0) and click[3, 20, 30] == pytest.approx(1.0)  # lung clicks
    boxed = np.asarray(pre({"image": image, "boxes": [{"label": "lung", "min": [5, 5], "max": [30, 30]}]})["image"])
    assert boxed[1].sum() == 26 * 26
    lasso = {"label": "lung", "points": [[5, 5], [5, 20], [20, 20]]}
    assert np.asarray(pre({"image": image, "lassos": [lasso]})["image"])[3].any()
    # a region answer on the 2D image's grid
    net, inferer = parser.get_parsed_content("network_def").eval(), parser.get_parsed_content("inferer")
    d = pre({"image": image, "lung": [[20, 30]], "result_region": True})
    with torch.no_grad():
        d["pred"] = inferer(d["image"][None].float(), net)[0]
    out = post(d)
    assert out["result_region_box"]["shape"] == [64, 64] and tuple(out["pred"].shape[-2:]) == (64, 64)


@pytest.mark.slow
@pytest.mark.server
def test_2d_data_variant_is_served(variant_2d_data: Path, server_factory, tmp_path: Path) -> None:
    import shutil

    name = variant_2d_data.name
    bundles, studies = tmp_path / "bundles", tmp_path / "studies"
    shutil.copytree(variant_2d_data, bundles / name)
    studies.mkdir()
    _disc_images(studies, 1, seed=5)
    server = server_factory(studies, conf=f"models={name},bundles={bundles},skip_scoring=true,skip_trainers=true")
    client = server.client()
    model = client.info()["models"][name]
    assert model["type"] == "deepedit" and model["dimension"] == 2
    for params in ({}, {"lung": [[20, 30]]}, {"lung": [[20, 30, 0]], "background": [[2, 2, 0]]},
                   {"boxes": [{"label": "lung", "min": [5, 5], "max": [30, 30]}]}):
        label_file, _ = client.infer(name, "xray_000", params)
        answer = nib.load(label_file)  # a one-slice volume with the image's pixels (as Slicer shows a 2D image)
        assert np.asarray(answer.dataobj).squeeze().shape == (64, 64)
        np.testing.assert_allclose(np.abs(np.diag(answer.affine))[:2], [0.5, 0.5], atol=1e-4)
    label_file, params = client.infer(name, "xray_000", {"lung": [[20, 30]], "result_region": True})
    params = json.loads(params) if isinstance(params, str) else params
    assert params["result_region"]["shape"] == [64, 64]
    lo, hi = params["result_region"]["min"], params["result_region"]["max"]
    region = nib.load(label_file)
    assert region.shape[:2] == (hi[0] - lo[0] + 1, hi[1] - lo[1] + 1)
    np.testing.assert_allclose(np.abs(np.diag(region.affine))[:2], [0.5, 0.5], atol=1e-4)  # the image's pixels
