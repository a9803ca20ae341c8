"""``labelzoo plan ... --interactive``: the interactive variant of a planned configuration.

Default suite: the variant passes ``labelzoo bundle verify`` without the runs, its training pipeline makes the
guidance channels from simulated prompts, its network takes them, and the app serves it as a MONAI Label
DeepEdit model answering clicks (a real server). Slow: the click-simulating smoke runs (train with DeepEdit's
``Interaction``, evaluate, infer) through ``python -m monai.bundle run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from labelzoo.planning.commands import run as plan_run

NAME = "labelzoosyntheticct_ct_nnunet3dfullres_interactive_annotation"


@pytest.fixture(scope="module")
def variant(msd_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan-interactive") / "planned"
    text = plan_run(str(msd_dataset), out=str(out), configurations="3d_fullres", interactive=True)
    assert NAME in text
    return out / NAME


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


@pytest.mark.server
def test_variant_is_served_as_deepedit_and_answers_clicks(variant: Path, server_factory, tmp_path: Path) -> None:
    import shutil

    from labelzoo.data import build_sample_studies

    bundles = tmp_path / "bundles"
    shutil.copytree(variant, bundles / NAME)
    studies = build_sample_studies(tmp_path / "studies", n_images=1, n_labeled=0, shape=(48, 48, 32))
    server = server_factory(studies, conf=f"models={NAME},bundles={bundles},skip_scoring=true,skip_trainers=true")
    client = server.client()
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
