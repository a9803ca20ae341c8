"""Static bundle checks: model-zoo layout and metadata, MONAI workflow properties, the MONAI Label contract.

Each ``check_*`` function returns a list of :class:`~labelzoo.bundle.problems.Problem` (empty when the
check passes) and never raises for a bad bundle. They read files but run no network and no training;
:mod:`labelzoo.bundle.verify` strings them together with the network checks and the real run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from labelzoo.bundle.problems import Problem

#: Files every bundle ships (model-zoo layout plus LabelZoo's evaluate / multi-GPU configs).
REQUIRED_FILES: tuple[str, ...] = (
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
)
#: One of these lists the weights (never committed).
LARGE_FILES: tuple[str, ...] = ("large_files.yml", "large_files.yaml", "large_files.json")
#: Model-zoo naming: ``<anatomy>_<modality>_<method>_<task>`` (at least four lowercase parts).
NAME_PATTERN = re.compile(r"^[a-z0-9]+(_[a-z0-9]+){3,}$")
#: Data keys: ``image`` in, ``pred`` out, ``label`` the training target.
INFER_KEYS = frozenset({"image", "pred"})
TRAIN_KEYS = frozenset({"image", "label", "pred"})
#: The run id MONAI Label's trainer passes to ``monai.bundle.run`` (``request.get("run_id", "run")``).
RUN_ID = "run"


@lru_cache(maxsize=1)
def meta_schema() -> dict[str, Any]:
    """The model-zoo metadata JSON schema shipped in the package (no download)."""
    text = resources.files("labelzoo.bundle").joinpath("schema/meta_schema.json").read_text()
    return json.loads(text)


def load_json(root: Path, rel: str) -> tuple[Any, list[Problem]]:
    """Parse ``root/rel``; a syntax error becomes a Problem naming the line and column."""
    path = root / rel
    if not path.is_file():
        return None, []  # reported by check_layout
    try:
        return json.loads(path.read_text()), []
    except json.JSONDecodeError as e:
        return None, [Problem("json", rel, f"not valid JSON at line {e.lineno} column {e.colno}: {e.msg}")]
    except (OSError, UnicodeDecodeError) as e:
        return None, [Problem("json", rel, f"cannot read the file: {e}")]


def check_layout(root: Path) -> list[Problem]:
    """Model-zoo file layout: required files, ``large_files.yml`` listing ``models/model.pt``, folder name."""
    problems = [
        Problem("layout", rel, "missing: every LabelZoo bundle ships this file (model-zoo layout)")
        for rel in REQUIRED_FILES
        if not (root / rel).is_file()
    ]
    large = [n for n in LARGE_FILES if (root / n).is_file()]
    if not large:
        problems.append(Problem("layout", "large_files.yml", "missing: list the weights (models/model.pt) here; "
                                                             "weights are never committed"))
    elif "models/model.pt" not in (root / large[0]).read_text():
        problems.append(Problem("layout", large[0], "does not list models/model.pt (path: \"models/model.pt\")"))
    if not NAME_PATTERN.match(root.name):
        problems.append(Problem("layout", root.name, "folder name must follow the model-zoo naming "
                                                     "<anatomy>_<modality>_<method>_<task> in lowercase, "
                                                     "e.g. btcv_ct_unetr_segmentation"))
    return problems


def _schema_path(error: Any) -> str:
    return "#".join(str(p) for p in error.absolute_path)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def check_metadata(meta: dict[str, Any], config_texts: dict[str, str], file: str = "configs/metadata.json",
                   installed_monai: str | None = None) -> list[Problem]:
    """Metadata against the zoo schema, ``version`` in ``changelog``, pinned versions, the ``labelzoo`` pin.

    Args:
        meta: the parsed metadata.
        config_texts: raw text of the bundle's configs by relative path (to find references to ``labelzoo``).
        file: the metadata path for messages.
        installed_monai: the MONAI version the bundle is verified with (``monai.__version__`` by default).
    """
    import jsonschema

    problems: list[Problem] = []
    if not isinstance(meta, dict):
        return [Problem("metadata", file, "must be a JSON object")]
    validator = jsonschema.Draft7Validator(meta_schema())
    for error in sorted(validator.iter_errors(meta), key=lambda e: list(map(str, e.absolute_path))):
        problems.append(Problem("metadata", file, f"{error.message} (model-zoo metadata schema)",
                                _schema_path(error)))
    version, changelog = meta.get("version"), meta.get("changelog")
    if isinstance(version, str) and isinstance(changelog, dict):
        if version not in changelog:
            problems.append(Problem("metadata", file, f"version {version!r} has no entry in changelog "
                                                      f"(add \"{version}\": \"what changed\")", "changelog"))
        elif changelog and max(changelog, key=_version_key) != version:
            problems.append(Problem("metadata", file, f"version {version!r} is not the newest changelog entry "
                                                      f"({max(changelog, key=_version_key)!r})", "version"))
    if installed_monai is None:
        import monai

        installed_monai = monai.__version__
    pinned = meta.get("monai_version")
    if isinstance(pinned, str) and pinned.split("+")[0] != installed_monai.split("+")[0]:
        problems.append(Problem("metadata", file, f"monai_version {pinned!r} differs from the MONAI the bundle is "
                                                  f"verified with ({installed_monai})", "monai_version"))
    # a packed zoo bundle names its vendored copy (scripts.labelzoo.x): that one needs no pin
    uses_labelzoo = sorted(rel for rel, text in config_texts.items() if re.search(r"(?<![\w.])labelzoo\.", text))
    packages = meta.get("required_packages_version")
    if uses_labelzoo and not (isinstance(packages, dict) and "labelzoo" in packages):
        problems.append(Problem("metadata", file, f"{', '.join(uses_labelzoo)} reference the labelzoo package: pin "
                                                  "it in required_packages_version (\"labelzoo\": \"X.Y.Z\")",
                                "required_packages_version"))
    return problems


def _check_label_map(meta: dict[str, Any], file: str) -> list[Problem]:
    """``labelzoo.label_map`` (optional): label values (integers, 0 = background among them) -> names;
    ``labelzoo.slice_axis`` (optional): the axis a 2D network is run slice by slice along on volumes (0, 1 or 2)."""
    section = meta.get("labelzoo")
    if section is None:
        return []
    if isinstance(section, dict) and "slice_axis" in section:
        axis = section["slice_axis"]
        if not isinstance(axis, int) or isinstance(axis, bool) or axis not in (0, 1, 2):
            return [Problem("monailabel", file, f"slice_axis must be 0, 1 or 2, got {axis!r:.20}",
                            "labelzoo#slice_axis")]
        if "label_map" not in section:
            return []
    where = "labelzoo#label_map"
    label_map = section.get("label_map") if isinstance(section, dict) else None
    if not isinstance(label_map, dict) or not label_map:
        return [Problem("monailabel", file, "expected {\"label_map\": {\"0\": \"background\", ...}}", "labelzoo")]
    try:
        values = sorted(int(k) for k in label_map)
    except ValueError:
        return [Problem("monailabel", file, f"label_map keys must be label values, got {list(label_map)}", where)]
    if 0 not in values:
        return [Problem("monailabel", file, "label_map names the label values postprocessing writes and must "
                                            "include 0 (background)", where)]
    return []


def check_data_format(meta: dict[str, Any], file: str = "configs/metadata.json") -> list[Problem]:
    """MONAI Label reads the first input as the image and the first output as the prediction, and takes the
    labels from the output's ``channel_def`` (lower-cased): keys must be ``image`` / ``pred``, channels
    numbered 0..N-1 with N = ``num_channels``, names unique ignoring case.

    Region (sigmoid) bundles, whose postprocessing turns overlapping region channels into a label map (BraTS),
    name the network's channels 0..N-1 in ``channel_def`` (the model zoo's meaning) and the label map's values,
    which MONAI Label shows, in the top-level ``"labelzoo": {"label_map": {"0": "background", ...}}``.
    """
    problems: list[Problem] = []
    fmt = meta.get("network_data_format") if isinstance(meta, dict) else None
    if not isinstance(fmt, dict):
        return [Problem("monailabel", file, "missing network_data_format (MONAI Label reads inputs/outputs here)",
                        "network_data_format")]
    for side, key in (("inputs", "image"), ("outputs", "pred")):
        items = fmt.get(side)
        if not isinstance(items, dict) or not items:
            problems.append(Problem("monailabel", file, f"network_data_format#{side} must hold '{key}'",
                                    f"network_data_format#{side}"))
            continue
        first = next(iter(items))
        if first != key:
            problems.append(Problem("monailabel", file, f"first {side[:-1]} is {first!r}: MONAI Label uses the first "
                                                        f"entry as the data key, expected {key!r}",
                                    f"network_data_format#{side}#{first}"))
    pred = (fmt.get("outputs") or {}).get("pred")
    if isinstance(pred, dict):
        cdef = pred.get("channel_def")
        where = "network_data_format#outputs#pred#channel_def"
        if not isinstance(cdef, dict) or not cdef:
            problems.append(Problem("monailabel", file, "missing: MONAI Label takes the label names from here "
                                                        "({\"0\": \"background\", \"1\": \"organ\", ...})", where))
        else:
            try:
                indices = sorted(int(k) for k in cdef)
            except ValueError:
                indices = []
                problems.append(Problem("monailabel", file, f"keys must be channel numbers, got {list(cdef)}", where))
            n = pred.get("num_channels")
            if "region_def" in pred:
                problems.append(Problem("metadata", file, "region_def is not in the model-zoo metadata schema: name "
                                                          "the network's channels in channel_def and the label map's "
                                                          "values in the top-level \"labelzoo\": {\"label_map\": "
                                                          "{...}}", "network_data_format#outputs#pred#region_def"))
            if indices and isinstance(n, int) and indices != list(range(n)):
                problems.append(Problem("monailabel", file, f"channels {indices} do not match num_channels={n}: "
                                                            f"expected one name for each channel 0..{n - 1}", where))
            problems += _check_label_map(meta, file)
            names = [str(v).lower() for v in cdef.values()]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                problems.append(Problem("monailabel", file, f"names {dupes} repeat (MONAI Label lower-cases them, "
                                                            "so each name must be unique ignoring case)", where))
    return problems


def config_parser(root: Path, files: Sequence[str | Path], overrides: dict[str, Any] | None = None,
                  lenient: bool = False, override_file: str = "") -> tuple[Any, list[Problem]]:
    """A MONAI ``ConfigParser`` over ``files`` (merged in order, like ``--config_file "[...]"``) plus overrides.

    With ``lenient``, override ids whose parent is missing are skipped (a variant's training-only ids applied
    to inference.json); otherwise each is a Problem naming ``override_file`` and the id.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    problems: list[Problem] = []
    try:
        parser.read_config([str(root / f) if not Path(f).is_absolute() else str(f) for f in files])
    except Exception as e:  # noqa: BLE001 (any parse failure is reported, never raised)
        names = ", ".join(map(str, files))
        return None, [Problem("json", names, f"cannot merge the configs: {e}")]
    for key, value in (overrides or {}).items():
        try:
            parser[key] = value
        except (KeyError, IndexError, ValueError, TypeError):
            if not lenient:
                problems.append(Problem("smoke", override_file or "overrides",
                                        f"override id has no parent in {', '.join(map(str, files))}", key))
    return parser, problems


def has_id(parser: Any, config_id: str) -> bool:
    """Whether ``config_id`` (``a#b#c``) is in the parser's raw config."""
    return parser is not None and config_id in parser


def check_properties_static(train: Any, infer: Any, evaluate: Any, multi_gpu: Any) -> list[Problem]:
    """The ids of MONAI's required train / infer workflow properties (``monai.bundle.properties``) exist.

    This is the config-only part of ``ConfigWorkflow(...).check_properties()``; the real call, which
    instantiates each property, runs in :func:`labelzoo.bundle.smoke.check_workflow_properties`.
    """
    from monai.bundle.properties import InferProperties, TrainProperties
    from monai.utils import BundleProperty, BundlePropertyConfig

    problems: list[Problem] = []
    for parser, props, file in ((train, TrainProperties, "configs/train.json"),
                                (infer, InferProperties, "configs/inference.json")):
        if parser is None:
            continue
        for name, prop in props.items():
            config_id = prop.get(BundlePropertyConfig.ID)
            if prop.get(BundleProperty.REQUIRED) and config_id and not has_id(parser, config_id):
                problems.append(Problem("properties", file, f"required {file.split('/')[-1][:-5]} workflow property "
                                                            f"'{name}' is missing (monai.bundle.properties)",
                                        config_id))
    for parser, file, ids in ((evaluate, "configs/evaluate.json", (RUN_ID, "validate#evaluator")),
                              (multi_gpu, "configs/multi_gpu_train.json", (RUN_ID, "train#trainer"))):
        for config_id in ids:
            if parser is not None and not has_id(parser, config_id):
                problems.append(Problem("properties", file, "missing after merging with train.json", config_id))
    return problems


def _monailabel_ids() -> tuple[list[Sequence[str]], list[str]]:
    """Config ids MONAI Label's bundle infer and train tasks read, taken from the installed MONAI Label."""
    from monailabel.tasks.infer.bundle import BundleConstants as InferConst
    from monailabel.tasks.train.bundle import BundleConstants as TrainConst

    i, t = InferConst(), TrainConst()
    infer_ids: list[Sequence[str]] = [[i.key_bundle_root()], [i.key_device()], [i.key_network_def()],
                                      list(i.key_preprocessing()), list(i.key_postprocessing()),
                                      list(i.key_inferer())]
    train_ids = [t.key_bundle_root(), t.key_device(), t.key_network(), t.key_network_def(),
                 t.key_train_trainer_max_epochs(), t.key_train_dataset_data(), t.key_train_handlers(),
                 t.key_validate_dataset_data(), RUN_ID]
    return infer_ids, train_ids


def check_monailabel(train: Any, infer: Any) -> list[Problem]:
    """The config ids MONAI Label's ``BundleInferTask`` / ``BundleTrainTask`` read, and how it uses them.

    - inference.json: ``bundle_root``, ``device``, ``network_def``, ``preprocessing`` (or
      ``pre_transforms``), ``postprocessing`` (or ``post_transforms``), ``inferer``;
    - train.json: ``bundle_root``, ``device``, ``network`` (its ``CheckpointLoader`` loads into
      ``@network``), ``network_def``, ``train#trainer#max_epochs``, ``train#dataset#data``,
      ``train#handlers`` (a list it inserts a loader into, which the trainer must use),
      ``validate#dataset#data`` and the run id ``run``.
    """
    problems: list[Problem] = []
    infer_ids, train_ids = _monailabel_ids()
    if infer is not None:
        for choices in infer_ids:
            if not any(has_id(infer, c) for c in choices):
                problems.append(Problem("monailabel", "configs/inference.json",
                                        f"MONAI Label's BundleInferTask reads {' or '.join(choices)}: missing",
                                        choices[0]))
        if has_id(infer, "displayable_configs") and not isinstance(infer.get("displayable_configs"), dict):
            problems.append(Problem("monailabel", "configs/inference.json", "must be a dict of option: default",
                                    "displayable_configs"))
    if train is not None:
        for config_id in train_ids:
            if not has_id(train, config_id):
                problems.append(Problem("monailabel", "configs/train.json",
                                        "MONAI Label's BundleTrainTask reads or overrides this id: missing",
                                        config_id))
        handlers = train.get("train#handlers")
        if has_id(train, "train#handlers") and not isinstance(handlers, list):
            problems.append(Problem("monailabel", "configs/train.json", "must be a list of handler configs "
                                                                        "(MONAI Label inserts a CheckpointLoader)",
                                    "train#handlers"))
        used = train.get("train#trainer#train_handlers")
        if has_id(train, "train#trainer") and not (isinstance(used, str) and "@train#handlers" in used):
            problems.append(Problem("monailabel", "configs/train.json", "must reference @train#handlers, or the "
                                                                        "handlers MONAI Label sets are ignored",
                                    "train#trainer#train_handlers"))
        network = train.get("network")
        if has_id(train, "network") and not (isinstance(network, str) and "@network_def" in network):
            problems.append(Problem("monailabel", "configs/train.json", "should be built from @network_def "
                                                                        "(\"$@network_def.to(@device)\")", "network"))
    return problems


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every dict holding a ``_target_`` in a raw config, with its config id."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}#{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}#{i}" if path else str(i))


def _literal_keys(value: Any) -> list[str] | None:
    """The data keys of a transform's ``keys`` argument, or None when it is a reference or expression."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return None
    if any(v[:1] in ("$", "@", "%") for v in values):
        return None
    return values


def check_data_keys(config: dict[str, Any], file: str, allowed: frozenset[str]) -> list[Problem]:
    """Dict transforms use only the data keys MONAI Label and our tooling pass: ``image``, ``label``, ``pred``."""
    problems: list[Problem] = []
    for config_id, node in _walk(config):
        for arg in ("keys", "orig_keys", "image_key", "label_key", "source_key"):
            keys = _literal_keys(node.get(arg))
            bad = sorted(set(keys or ()) - allowed)
            if bad:
                problems.append(Problem("keys", file, f"{node['_target_']} uses data key(s) {bad}: expected only "
                                                      f"{sorted(allowed)} ('image' in, 'pred' out, 'label' target)",
                                        f"{config_id}#{arg}"))
    return problems


def check_infer_io(infer: Any) -> list[Problem]:
    """inference.json loads ``image`` in its preprocessing and produces ``pred`` in its postprocessing."""
    problems: list[Problem] = []
    if infer is None:
        return problems
    pre_id = next((k for k in ("preprocessing", "pre_transforms") if has_id(infer, k)), None)
    post_id = next((k for k in ("postprocessing", "post_transforms") if has_id(infer, k)), None)
    if pre_id:
        loaders = [n for _, n in _walk(infer.get(pre_id)) if str(n["_target_"]).endswith("LoadImaged")]
        if not any("image" in (_literal_keys(n.get("keys")) or ()) for n in loaders):
            problems.append(Problem("keys", "configs/inference.json", "no LoadImaged with keys 'image': MONAI Label "
                                                                      "replaces it with its own loader", pre_id))
    if post_id:
        used = {k for _, n in _walk(infer.get(post_id)) for k in (_literal_keys(n.get("keys")) or ())}
        if "pred" not in used:
            problems.append(Problem("keys", "configs/inference.json", "no transform works on key 'pred': MONAI Label "
                                                                      "reads the prediction from 'pred'", post_id))
    return problems
