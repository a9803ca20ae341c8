"""The app serves planner-made bundles like any other: `--conf bundles=<planned folder>`, real server and client."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import pytest

from labelzoo.planning.emit import emit_bundles
from labelzoo.planning.fingerprint import extract_fingerprint
from labelzoo.planning.planner import ExperimentPlanner


@pytest.mark.server
def test_planned_bundle_is_served_and_infers(msd_dataset: Path, sample_studies: Path, server_factory,
                                             tmp_path: Path) -> None:
    fp = extract_fingerprint(msd_dataset)
    planned = tmp_path / "planned"
    (bundle,) = emit_bundles(ExperimentPlanner().plan(fp), fp, planned, msd_dataset, configurations=["3d_fullres"])
    server = server_factory(sample_studies, conf=f"models={bundle.name},bundles={planned},skip_scoring=true")
    client = server.client()
    model = client.info()["models"][bundle.name]
    assert model["labels"] == {"spleen": 1, "left kidney": 2, "liver": 3} and model["dimension"] == 3
    label_file, params = client.infer(bundle.name, "case_000", {})
    image = nib.load(sample_studies / "case_000.nii.gz")
    pred = nib.load(label_file)
    assert pred.shape == image.shape == (64, 64, 48)
    assert set(pred.get_fdata().ravel().astype(int).tolist()) <= {0, 1, 2, 3}
