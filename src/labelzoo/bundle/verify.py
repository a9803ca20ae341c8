"""``labelzoo bundle verify DIR``: the checks every LabelZoo bundle must pass.

API (other code and the tests call this; the CLI only prints its result)::

    from labelzoo.bundle import verify_bundle
    problems = verify_bundle("bundles/btcv_ct_unetr_segmentation", run=True, variant=None)
    assert not problems, "\\n".join(map(str, problems))

:func:`verify_bundle` returns a list of :class:`~labelzoo.bundle.problems.Problem` (file, config id,
message, check name); an empty list means the bundle passes. It never raises for a broken bundle, only for
a missing folder (:class:`~labelzoo.errors.LabelZooError`). The checks, in order:

1. **layout** (model zoo): ``configs/{metadata,train,evaluate,inference,multi_gpu_train}.json``,
   ``configs/logging.conf``, ``docs/README.md``, ``LICENSE``, ``large_files.yml`` listing
   ``models/model.pt``, folder name ``<anatomy>_<modality>_<method>_<task>``; every JSON file parses.
2. **metadata**: valid against the model-zoo metadata schema shipped in the package
   (``labelzoo/bundle/schema/meta_schema.json``, no download); ``version`` is the newest ``changelog``
   entry; ``monai_version`` is the MONAI being used; ``labelzoo`` pinned in ``required_packages_version``
   when a config references it.
2b. **whitespace / large_files / schema** (the model zoo's own pre-commit checks,
   :mod:`labelzoo.bundle.zoochecks`): no trailing whitespace and a final newline in ``docs/`` and
   ``configs/`` text files; ``large_files.yml`` a non-empty ``large_files`` list whose entries carry
   ``path`` / ``url`` / ``hash_type`` / ``hash_val`` (``url`` may be empty until published; when set, a
   known ``hash_type`` and a ``hash_val``); ``schema`` the one metadata schema version every bundle uses.
3. **properties**: the ids of MONAI's required train / infer workflow properties exist (static), and
   with ``run``, ``ConfigWorkflow(..., workflow_type="train" | "infer").check_properties()`` reports
   nothing on the synthetic data.
4. **monailabel / keys**: the ids MONAI Label's ``BundleInferTask`` / ``BundleTrainTask`` read (taken from
   the installed ``monailabel.tasks.*.bundle.BundleConstants``), data keys ``image`` / ``label`` / ``pred``
   only, ``network_data_format`` inputs ``image`` and outputs ``pred`` with a ``channel_def`` naming each
   channel (MONAI Label's labels; a region bundle names its label map's values in ``labelzoo.label_map``).
5. **network**: ``verify_net_in_out`` with the metadata's shapes; **torchscript**: ``ckpt_export`` and
   reload (small network from ``configs/smoke.json``), unless metadata says ``"torchscript_export": false``
   with a ``"torchscript_export_reason"``.
6. **run** (``run=True``): on a copy of the bundle and synthetic MSD-style data derived from
   ``network_data_format``, ``python -m monai.bundle run`` for train.json (1 epoch), evaluate.json and
   inference.json in subprocesses with the bundle's small-run overrides; ``models/model.pt`` is written,
   evaluate writes to ``output_dir``, each inference output has its input's shape and affine. Then MONAI
   Label's own ``BundleInferTask`` / ``BundleTrainTask`` load the trained copy (smoke overrides merged into
   its inference.json / train.json) and one inference runs through MONAI Label's pipeline; its label file
   must have the input's geometry. Bundles write predictions under the config id ``output_dir`` (the run
   overrides it) and models to ``bundle_root``/models/model.pt.

Small runs: a bundle ships ``configs/smoke.json`` (format in :mod:`labelzoo.bundle.smoke`) with the
synthetic data's size and label values and per-workflow override ids (``all``, ``train``, ``evaluate``,
``inference``, ``multi_gpu``). Variants: ``variant="configs/baseline.json"`` merges that override file
after the bundle's configs in every check and run (ids whose parent is absent from a workflow's configs,
such as training-only ids in inference.json, are skipped for that workflow; ids that apply nowhere are
reported).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelzoo.bundle import checks
from labelzoo.bundle.network import check_net_in_out, check_torchscript
from labelzoo.bundle.problems import Problem
from labelzoo.bundle.smoke import WORKFLOWS, data_format, load_smoke, prepare_workspace, smoke_run
from labelzoo.bundle.zoochecks import check_zoo
from labelzoo.errors import LabelZooError

logger = logging.getLogger(__name__)

CONFIGS = ("configs/train.json", "configs/evaluate.json", "configs/inference.json", "configs/multi_gpu_train.json")


def _load_variant(root: Path, variant: str | Path | None) -> tuple[Path | None, dict[str, Any], list[Problem]]:
    if variant is None:
        return None, {}, []
    path = Path(variant)
    if not path.is_absolute() and not path.is_file():
        path = root / variant
    if not path.is_file():
        raise LabelZooError(f"variant file {variant} not found (as given, nor under {root}): expected an override "
                            "config such as configs/baseline.json")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        return path, {}, [Problem("json", str(variant), f"not valid JSON: {e}")]
    if not isinstance(data, dict):
        return path, {}, [Problem("json", str(variant), "must be a JSON object of config id: value")]
    return path, data, []


def _check_variant(parsers: dict[str, Any], variant: dict[str, Any], name: str) -> list[Problem]:
    """Every id of the variant must apply to at least one workflow's configs."""
    problems = []
    for key in variant:
        parent = key.rsplit("#", 1)[0] if "#" in key else ""
        if parent and not any(p is not None and parent in p for p in parsers.values()):
            problems.append(Problem("variant", name, "no workflow config has this id's parent "
                                                     f"'{parent}': the override would fail", key))
    return problems


def verify_bundle(path: str | Path, run: bool = True, variant: str | Path | None = None,
                  workdir: str | Path | None = None, timeout: float = 900) -> list[Problem]:
    """Run every bundle check on the bundle folder ``path`` and return the problems found.

    Args:
        path: the bundle folder (holding ``configs/``).
        run: also train / evaluate / infer for real on synthetic data (subprocesses; the slow part).
        variant: an override config (e.g. ``configs/baseline.json``, relative to the bundle or the working
            directory) merged after the bundle's configs in every check.
        workdir: where to put the bundle copy, data, outputs and logs (kept); a temporary folder, removed
            afterwards, by default.
        timeout: seconds allowed for each ``python -m monai.bundle run``.

    Returns:
        The problems; empty when the bundle passes.

    Raises:
        LabelZooError: if ``path`` is not a folder or ``variant`` does not exist.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise LabelZooError(f"bundle folder {path} does not exist: expected a MONAI bundle folder with configs/")
    with bundle_scripts_importable(root):
        return _verify(root, run, variant, workdir, timeout)


@contextmanager
def bundle_scripts_importable(root: Path) -> Iterator[None]:
    """With a ``scripts/`` package in the bundle (the zoo convention, e.g. vendored labelzoo code), make
    ``scripts.*`` importable from ``root`` while checking, as ``python -m monai.bundle run`` from the bundle
    folder does; another bundle's ``scripts`` modules are unloaded before and after."""
    if not (root / "scripts" / "__init__.py").is_file():
        yield
        return

    def unload() -> None:
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]

    unload()
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        if str(root) in sys.path:
            sys.path.remove(str(root))
        unload()


def _verify(root: Path, run: bool, variant: str | Path | None, workdir: str | Path | None,
            timeout: float) -> list[Problem]:
    variant_path, variant_cfg, problems = _load_variant(root, variant)
    variant_name = str(variant) if variant is not None else ""

    problems += checks.check_layout(root)
    meta, found = checks.load_json(root, "configs/metadata.json")
    problems += found
    texts: dict[str, str] = {}
    for rel in CONFIGS:
        _, found = checks.load_json(root, rel)
        problems += found
        if (root / rel).is_file():
            texts[rel] = (root / rel).read_text(errors="replace")
    if isinstance(meta, dict):
        problems += checks.check_metadata(meta, texts)
        problems += checks.check_data_format(meta)
    problems += check_zoo(root, meta if isinstance(meta, dict) else None)
    smoke, found = load_smoke(root)
    problems += found
    if any(p.check == "json" for p in problems) or not isinstance(meta, dict):
        return problems  # nothing further can be parsed

    parsers: dict[str, Any] = {}
    for workflow, (files, _) in WORKFLOWS.items():
        if all((root / f).is_file() for f in files):
            parser, found = checks.config_parser(root, files)
            problems += found
            if parser is not None and variant_cfg:
                for key, value in variant_cfg.items():
                    if _applies(parser, key):
                        parser[key] = value
            parsers[workflow] = parser
        else:
            parsers[workflow] = None
    if variant_cfg:
        problems += _check_variant(parsers, variant_cfg, variant_name)
    problems += checks.check_properties_static(parsers["train"], parsers["inference"], parsers["evaluate"],
                                               parsers["multi_gpu"])
    problems += checks.check_monailabel(parsers["train"], parsers["inference"])
    problems += checks.check_infer_io(parsers["inference"])
    for workflow, rel, allowed in (("train", "configs/train.json", checks.TRAIN_KEYS),
                                   ("evaluate", "configs/evaluate.json", checks.TRAIN_KEYS),
                                   ("inference", "configs/inference.json", checks.INFER_KEYS),
                                   ("multi_gpu", "configs/multi_gpu_train.json", checks.TRAIN_KEYS)):
        parser = parsers[workflow]
        if parser is not None:
            own = parser.get() if workflow in ("train", "inference") else _own_part(parser, root / rel)
            problems += checks.check_data_keys(own, rel, allowed)
    if problems:
        return problems  # the network and the run need consistent configs

    infer_variant = {k: v for k, v in variant_cfg.items() if _applies(parsers["inference"], k)}
    problems += check_net_in_out(root, infer_variant)
    with tempfile.TemporaryDirectory(prefix="labelzoo-verify-") as tmp:
        work = Path(workdir).expanduser().resolve() if workdir else Path(tmp)
        if meta.get("torchscript_export", True) and not problems:
            fmt_input = _patch_input_shape(meta, smoke.data)
            small = {**infer_variant, **smoke.overrides("inference")}
            problems += check_torchscript(root, work / "torchscript", fmt_input, small)
        if run and not problems:
            ws, found = prepare_workspace(root, work / "smoke", meta, variant_path)
            problems += found
            if not found:
                problems += smoke_run(ws, timeout=timeout)
    return problems


def _applies(parser: Any, key: str) -> bool:
    parent = key.rsplit("#", 1)[0] if "#" in key else ""
    return parser is not None and (parent == "" or parent in parser)


def _own_part(parser: Any, file: Path) -> dict[str, Any]:
    """The ids an override file (evaluate.json, multi_gpu_train.json) sets, resolved in the merged config."""
    raw = json.loads(file.read_text())
    return {k: parser.get(k) for k in raw if k in parser}


def _patch_input_shape(meta: dict[str, Any], data: dict[str, Any]) -> tuple[int, ...]:
    """``(1, C, *spatial)`` for the TorchScript check: smoke ``data.patch_size`` or the metadata shape."""
    from monai.bundle.scripts import _get_fake_spatial_shape

    image = next(iter(meta["network_data_format"]["inputs"].values()))
    spatial = data.get("patch_size") or _get_fake_spatial_shape(image["spatial_shape"])
    return (1, int(image["num_channels"]), *[int(s) for s in spatial])


def format_report(path: str | Path, problems: list[Problem]) -> str:
    """Human-readable report: one line per problem, or a one-line pass."""
    if not problems:
        return f"{path}: all bundle checks passed"
    lines = [f"{path}: {len(problems)} problem(s)"] + [f"  {p}" for p in problems]
    return "\n".join(lines)


__all__ = ["Problem", "verify_bundle", "format_report", "data_format"]
