"""The labelled cases a simulation plays with: read from an MSD dataset or a MONAI Label datastore, then split.

The simulator holds every ground truth. A fixed part of the cases is the held-out **test** set (never
put in the server's datastore); the rest is the **pool** the annotator labels, of which ``initial``
cases start labelled. The test split depends on ``test_seed`` only, so every strategy and every run
seed is scored on the same test cases; the initial labelled cases depend on the run seed and are the
same for every strategy at that seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from labelzoo.errors import LabelZooError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png")


@dataclass(frozen=True)
class Case:
    """One labelled case: an id (the file name without suffix), its image and its ground-truth label."""

    id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Dataset:
    """Labelled cases and, when the dataset names them, its classes (label value -> name)."""

    root: Path
    cases: list[Case]
    labels: dict[int, str] | None


def case_id(path: Path) -> str:
    """The image id MONAI Label gives a file: its name without the image suffix."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_msd(root: Path) -> Dataset:
    try:
        desc = json.loads((root / "dataset.json").read_text())
    except ValueError as e:
        raise LabelZooError(f"{root / 'dataset.json'} is not valid JSON: {e}") from None
    training = desc.get("training")
    if not isinstance(training, list) or not training:
        raise LabelZooError(f"{root / 'dataset.json'}: 'training' must be a non-empty list of image/label pairs")
    cases, problems = [], []
    for i, item in enumerate(training):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("image", "label")):
            problems.append(f"training[{i}] needs string 'image' and 'label'")
            continue
        image, label = (root / item["image"]).resolve(), (root / item["label"]).resolve()
        for p in (image, label):
            if not p.is_file():
                problems.append(f"training[{i}]: {p} does not exist")
        cases.append(Case(case_id(image), image, label))
    if problems:
        raise LabelZooError(f"{root / 'dataset.json'}: " + "; ".join(problems))
    labels = desc.get("labels")
    names = {int(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else None
    return Dataset(root, cases, names)


def _read_datastore(root: Path) -> Dataset:
    labels_dir = root / "labels" / "final"
    cases = []
    for image in sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(IMAGE_SUFFIXES)):
        cid = case_id(image)
        found = [labels_dir / f"{cid}{s}" for s in IMAGE_SUFFIXES if (labels_dir / f"{cid}{s}").is_file()]
        if found:
            cases.append(Case(cid, image.resolve(), found[0].resolve()))
    names = None
    if (root / "dataset.json").is_file():
        desc = json.loads((root / "dataset.json").read_text())
        if isinstance(desc.get("labels"), dict):
            names = {int(k): str(v) for k, v in desc["labels"].items()}
    return Dataset(root, cases, names)


def read_dataset(path: str | Path) -> Dataset:
    """Labelled cases of an MSD dataset (``dataset.json``) or a MONAI Label datastore (``labels/final``).

    Raises:
        LabelZooError: for a missing folder, a malformed ``dataset.json``, missing files or duplicate ids.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise LabelZooError(f"dataset {path}: no such folder (an MSD dataset or a MONAI Label datastore)")
    data = _read_msd(root) if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir() \
        else _read_datastore(root)
    ids = [c.id for c in data.cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise LabelZooError(f"dataset {path}: duplicate case ids {dupes}")
    return data


@dataclass(frozen=True)
class Split:
    """Who is where in one simulation run."""

    test: list[Case]
    initial: list[Case]
    unlabelled: list[Case]


def split_cases(cases: list[Case], n_test: int, n_initial: int, seed: int, test_seed: int = 1234) -> Split:
    """Held-out test cases (fixed by ``test_seed``), initial labelled cases (by ``seed``), the rest unlabelled.

    Raises:
        LabelZooError: when the numbers do not leave at least one unlabelled case.
    """
    if n_test < 1:
        raise LabelZooError(f"--n_test must be at least 1, got {n_test}")
    if n_initial < 1:
        raise LabelZooError(f"--initial must be at least 1 (training needs a label), got {n_initial}")
    if n_test + n_initial >= len(cases):
        raise LabelZooError(f"the dataset has {len(cases)} labelled cases: --n_test {n_test} + --initial {n_initial} "
                            f"leaves none to annotate")
    ordered = sorted(cases, key=lambda c: c.id)
    shuffled = list(ordered)
    random.Random(test_seed).shuffle(shuffled)
    test = sorted(shuffled[:n_test], key=lambda c: c.id)
    pool = sorted(shuffled[n_test:], key=lambda c: c.id)
    initial = sorted(random.Random(seed).sample(pool, n_initial), key=lambda c: c.id)
    chosen = {c.id for c in initial}
    return Split(test, initial, [c for c in pool if c.id not in chosen])
