"""Partial (slice-level) labels in the app: checked when saved, masked when the train task reads the datastore."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from labelzoo.partial import IGNORE_VALUE
from tests.app.conftest import REPO_ROOT


def _app_modules():
    app_dir = str(REPO_ROOT / "apps" / "labelzoo")
    sys.path.insert(0, app_dir)
    try:
        from lib.datastore import LabelZooDatastore
        from lib.errors import AppError
        from lib.scoring import DiceScoring
        from lib.train import LabelZooTrainTask
    finally:
        sys.path.remove(app_dir)
    return LabelZooDatastore, AppError, LabelZooTrainTask, DiceScoring


def test_partial_label_is_checked_on_save_and_masked_for_training(sample_studies: Path, tmp_path: Path) -> None:
    LabelZooDatastore, AppError, LabelZooTrainTask, DiceScoring = _app_modules()
    store = LabelZooDatastore(str(sample_studies), extensions=["*.nii.gz"], auto_reload=False)
    ref = nib.load(sample_studies / "case_004.nii.gz")  # 64 x 64 x 48, unlabelled
    painted = np.zeros(ref.shape, np.uint8)
    painted[20:30, 20:30, 10] = 6
    painted[20:30, 20:30, 30] = 1
    path = tmp_path / "partial.nii.gz"
    nib.save(nib.Nifti1Image(painted, ref.affine), str(path))
    for bad in ({"axis": 2, "slices": [48]}, {"axis": 5, "slices": [1]}, {"slices": "10"}, [10, 30]):
        with pytest.raises(AppError) as e:
            store.save_label("case_004", str(path), "final", {"annotated_slices": bad})
        assert e.value.status_code == 422 and "annotated_slices" in str(e.value.detail)
    assert "case_004" in store.get_unlabeled_images()  # nothing stored
    store.save_label("case_004", str(path), "final", {"annotated_slices": {"axis": 2, "slices": [10, 30]}})

    # the train task reads the datastore: the partial label trains from a copy with the other slices ignored
    task = LabelZooTrainTask.__new__(LabelZooTrainTask)
    task.bundle_info = SimpleNamespace(name="m")
    task.progress_path = tmp_path / "progress.json"
    datalist = task._mask_partial(store.datalist(), store)
    by_image = {Path(d["image"]).name: d["label"] for d in datalist}
    assert by_image["case_000.nii.gz"] == store.get_label_uri("case_000", "final")  # whole labels unchanged
    masked = np.asarray(nib.load(by_image["case_004.nii.gz"]).dataobj)
    assert len(task._partial) == 1 and by_image["case_004.nii.gz"] in task._partial
    assert (masked[..., 10] == painted[..., 10]).all() and (masked[..., 30] == painted[..., 30]).all()
    others = np.delete(masked, [10, 30], axis=2)
    assert (others == IGNORE_VALUE).all()
    assert '"partial_labels": 1' in task.progress_path.read_text()
    # validation never sees a partial label
    train, val = task._partition_datalist(datalist, {"val_split": 0.5})
    assert val and all(v["label"] not in task._partial for v in val)
    assert by_image["case_004.nii.gz"] in {t["label"] for t in train}

    # the suggestion differs only off the annotated slices: Dice (final vs original) is 1 on what was annotated
    suggestion = painted.copy()
    suggestion[0:10, 0:10, 40] = 1
    nib.save(nib.Nifti1Image(suggestion, ref.affine), str(tmp_path / "original.nii.gz"))
    store.save_label("case_004", str(tmp_path / "original.nii.gz"), "original", {})
    assert DiceScoring().score_one(store, "case_004") == pytest.approx(1.0)
