"""Typed, checked request options: nothing a client sends may become code.

MONAI's ``ConfigParser`` evaluates a string that starts with ``$``, resolves ``@`` references and ``%``
macros, and instantiates any dict holding ``_target_``. MONAI Label copies request options into bundle
config overrides (training: ``max_epochs``, the tracking names, ``device``...) and into the inference data
dict. Every option a client sends is therefore checked here against a per-task schema before a task starts:
known names only, each of a declared type and range; free text is plain text (no leading ``$``, ``@``, ``%``,
no control characters); nested values may hold no config keys (``_target_``, ``_requires_``...).

The checks are pure functions (no server, no files), unit-tested in ``tests/unit/test_options.py``; the app
turns a :class:`labelzoo.errors.LabelZooError` into HTTP 422 naming the option.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labelzoo.errors import LabelZooError

#: first characters that MONAI's ConfigParser treats as an expression, a reference or a macro
CONFIG_SIGILS = ("$", "@", "%")
#: the longest free-text option accepted (a run name, a client id)
MAX_TEXT = 200
#: the most items in a list option (clicks, label_info entries)
MAX_ITEMS = 10_000
#: how deep a nested option may go
MAX_DEPTH = 6

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_DEVICE = re.compile(r"^(cpu|cuda(:\d{1,2})?)$")
_GPUS = re.compile(r"^(all|\d{1,2}(,\d{1,2}){0,63})$")


def _fail(name: str, expected: str, value: Any) -> LabelZooError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return LabelZooError(f"option {name!r} must be {expected}, got {shown}")


def check_inert(value: Any, name: str, depth: int = 0) -> Any:
    """Return ``value`` if no part of it can become config code, else raise naming the option.

    Allowed: ``None``, booleans, finite numbers, plain strings, and lists / dicts of those (dict keys plain
    strings that do not start with ``_``, the prefix of ``_target_``, ``_requires_``, ``_disabled_``...).

    Raises:
        LabelZooError: for an expression (``"$..."``), a reference (``"@..."``), a macro (``"%..."``), a config
            key, a non-finite number, control characters, or nesting deeper than :data:`MAX_DEPTH`.
    """
    if depth > MAX_DEPTH:
        raise LabelZooError(f"option {name!r} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(name, "a finite number", value)
        return value
    if isinstance(value, str):
        return plain_text(value, name)
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise LabelZooError(f"option {name!r} has {len(value)} items; at most {MAX_ITEMS} are accepted")
        return [check_inert(v, f"{name}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if len(value) > MAX_ITEMS:
            raise LabelZooError(f"option {name!r} has {len(value)} entries; at most {MAX_ITEMS} are accepted")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("_") or k.startswith(CONFIG_SIGILS) or _CONTROL.search(k):
                raise LabelZooError(f"option {name!r} holds the key {k!r}: keys starting with '_', '$', '@' or '%' "
                                    "are bundle config syntax and are not accepted from a client")
            out[k] = check_inert(v, f"{name}.{k}", depth + 1)
        return out
    raise _fail(name, "JSON data (text, a number, true/false, a list or an object)", value)


def plain_text(value: Any, name: str, max_len: int = MAX_TEXT) -> str:
    """A client string that stays a string in a bundle config: no leading ``$``, ``@``, ``%``, no controls."""
    if not isinstance(value, str):
        raise _fail(name, "text", value)
    if len(value) > max_len:
        raise LabelZooError(f"option {name!r} is {len(value)} characters long; at most {max_len} are accepted")
    if value.lstrip().startswith(CONFIG_SIGILS):
        raise LabelZooError(f"option {name!r} may not start with '$', '@' or '%' (bundle config expression, "
                            f"reference or macro syntax), got {value[:40]!r}")
    if _CONTROL.search(value):
        raise LabelZooError(f"option {name!r} holds control characters")
    return value


def _one(value: Any) -> Any:
    """A list collapses to its first item, as the MONAI Label Slicer plugin sends config options back."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


# ---- option types: each takes (value, name) and returns the clean value or raises --------------------------------
Check = Callable[[Any, str], Any]


def as_bool(value: Any, name: str) -> bool:
    value = _one(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise _fail(name, "true or false", value)


def int_in(low: int, high: int) -> Check:
    def check(value: Any, name: str) -> int:
        value = _one(value)
        if isinstance(value, bool):
            raise _fail(name, f"an integer from {low} to {high}", value)
        try:
            number = int(value) if isinstance(value, (int, str)) else None
            if number is None and isinstance(value, float) and value.is_integer():
                number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise _fail(name, f"an integer from {low} to {high}", value)
        return number
    return check


def float_in(low: float, high: float, high_open: bool = False) -> Check:
    def check(value: Any, name: str) -> float:
        value = _one(value)
        expected = f"a number in [{low:g}, {high:g}{')' if high_open else ']'}"
        if isinstance(value, bool):
            raise _fail(name, expected, value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _fail(name, expected, value) from None
        if not math.isfinite(number) or number < low or number > high or (high_open and number >= high):
            raise _fail(name, expected, value)
        return number
    return check


def one_of(*choices: str, default: str | None = None) -> Check:
    def check(value: Any, name: str) -> str:
        value = _one(value)
        if value is None and default is not None:
            return default
        if isinstance(value, str) and value in choices:
            return value
        raise _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return check


def text(max_len: int = MAX_TEXT) -> Check:
    def check(value: Any, name: str) -> str:
        value = _one(value)
        return "" if value is None else plain_text(value, name, max_len)
    return check


def device(value: Any, name: str) -> str:
    value = _one(value)
    if isinstance(value, str) and _DEVICE.match(value.strip().lower()):
        return value.strip().lower()
    raise _fail(name, "'cpu', 'cuda' or 'cuda:N'", value)


def gpus(value: Any, name: str) -> str:
    value = _one(value)
    if value is None:
        return "all"
    text_value = str(value).replace(" ", "") if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if _GPUS.match(text_value):
        return text_value
    raise _fail(name, "'all' or comma-separated GPU indices such as '0,1'", value)


def filename(default: str) -> Check:
    """A file name inside the bundle's ``models/`` folder; an empty value (``[]``, ``""``, null) is the default."""
    def check(value: Any, name: str) -> str:
        value = _one(value)
        if value in (None, ""):
            return default
        if isinstance(value, str) and _FILENAME.match(value) and ".." not in value:
            return value
        raise _fail(name, "a file name (letters, digits, '.', '_', '-'; no folders)", value)
    return check


def safe_id(value: Any, name: str) -> str:
    value = _one(value)
    if isinstance(value, str) and _FILENAME.match(value) and ".." not in value:
        return value
    raise _fail(name, "an id (letters, digits, '.', '_', '-'; no folders)", value)


def points(value: Any, name: str) -> list[list[int]]:
    """Clicks: a list of integer voxel coordinates, each 2 to 4 numbers (MONAI Label's foreground/background)."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _fail(name, "a list of [x, y, z] voxel coordinates", value) from None
    if not isinstance(value, (list, tuple)) or len(value) > MAX_ITEMS:
        raise _fail(name, f"a list of at most {MAX_ITEMS} [x, y, z] voxel coordinates", value)
    out = []
    for i, p in enumerate(value):
        if (not isinstance(p, (list, tuple)) or not 2 <= len(p) <= 4
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in p)):
            raise _fail(f"{name}[{i}]", "[x, y, z] voxel coordinates (2 to 4 numbers)", p)
        out.append([int(round(c)) for c in p])
    return out


def data(value: Any, name: str) -> Any:
    """Any inert JSON value (passed as data to a task, never into a config)."""
    return check_inert(value, name)


@dataclass(frozen=True)
class Option:
    """One request option: its type check and what it is for (shown in the 422 message)."""

    check: Check
    help: str = ""


#: MONAI Label's training options (``BundleTrainTask.config()``), plus LabelZoo's ``val_interval``
TRAIN_OPTIONS: dict[str, Option] = {
    "max_epochs": Option(int_in(1, 100_000), "epochs to train"),
    "val_split": Option(float_in(-1.0, 1.0, high_open=True),
                        "fraction of labelled images that validate; -1: the bundle's own list"),
    "val_interval": Option(int_in(1, 100_000), "validate every n epochs"),
    "pretrained": Option(as_bool, "start from the current weights"),
    "multi_gpu": Option(as_bool, "train on every GPU (torchrun)"),
    "force_multi_gpu": Option(as_bool, "use the multi-GPU config even with one GPU"),
    "gpus": Option(gpus, "'all' or GPU indices"),
    "device": Option(device, "cpu or cuda"),
    "tracking": Option(one_of("None", "none", "mlflow", "", default="None"), "experiment tracking"),
    "tracking_uri": Option(text(500), "MLflow tracking URI"),
    "tracking_experiment_name": Option(text(), "MLflow experiment name"),
    "tracking_run_name": Option(text(), "MLflow run name"),
    "run_id": Option(lambda v, n: one_of("run", "", default="run")(v, n) or "run", "the bundle workflow to run"),
    "model_filename": Option(filename("model.pt"), "weights file in models/ to start from"),
    "client_id": Option(text(), "who asks (MONAILabelClient sends it)"),
}

#: MONAI Label's inference options (the model's config options, the Slicer plugin's and DeepEdit's params)
INFER_OPTIONS: dict[str, Option] = {
    "device": Option(device, "cpu or cuda"),
    "model_filename": Option(filename("model.pt"), "weights file in models/"),
    "save_label": Option(as_bool, "store the result in the datastore"),
    "label_tag": Option(safe_id, "tag to store the result under"),
    "result_extension": Option(one_of(".nii.gz", ".nii", ".nrrd", ".png", ".jpg", ".tif", ".seg.nrrd"),
                               "result file type"),
    "result_dtype": Option(one_of("uint8", "uint16", "int16", "int32", "float32"), "result voxel type"),
    "result_compress": Option(as_bool, "compress the result"),
    "largest_cc": Option(as_bool, "keep the largest connected component"),
    "restore_label_idx": Option(as_bool, "restore label indices"),
    "cache_transforms": Option(as_bool, "cache preprocessing"),
    "cache_transforms_in_memory": Option(as_bool, "cache preprocessing in memory"),
    "cache_transforms_ttl": Option(int_in(0, 86_400), "preprocessing cache lifetime (s)"),
    "logging": Option(one_of("DEBUG", "INFO", "WARNING", "ERROR"), "log level of this request"),
    "timeout": Option(float_in(1.0, 3600.0), "seconds to wait for the result"),
    "client_id": Option(text(), "who asks (for the log)"),
    "annotator": Option(text(), "who annotates (without authentication; with it, the signed-in user)"),
    "foreground": Option(points, "foreground clicks"),
    "background": Option(points, "background clicks"),
    "label_info": Option(data, "labels of the request (MONAI Label DeepEdit / OHIF)"),
    "label": Option(text(), "the selected label"),
    "label_names": Option(data, "label names"),
    "pipeline": Option(data, "MONAI Label pipeline options"),
}

#: batch inference: which images, and the inference options
BATCH_OPTIONS: dict[str, Option] = {
    **INFER_OPTIONS,
    "images": Option(one_of("all", "unlabeled", "labeled", default="unlabeled"), "which images to infer"),
    "max_workers": Option(int_in(1, 64), "parallel inferences"),
    "max_batch_size": Option(int_in(0, 1_000_000), "images per batch (0: all)"),
    "label_tag": Option(safe_id, "tag to store results under"),
}

#: active-learning strategies' options
STRATEGY_OPTIONS: dict[str, Option] = {
    "k": Option(int_in(1, 10_000), "rotate through the top k images"),
    "alpha": Option(float_in(0.0, 1.0), "hybrid: weight of uncertainty against diversity"),
    "n_slices": Option(int_in(1, 4096), "slice-level strategies: how many slices to ask for"),
    "slice_gap": Option(int_in(1, 4096), "slice-level strategies: least distance between two asked slices"),
    "label_tag": Option(safe_id, "images without a label of this tag are candidates"),
    "labels": Option(data, "label names"),
    "client_id": Option(text(), "who asks"),
    "annotator": Option(text(), "who annotates (without authentication; with it, the signed-in user)"),
    "device": Option(device, "cpu or cuda"),
}

#: what a client may store with an image or a label (``params`` of the datastore uploads, image/label info)
INFO_RESERVED = ("ts", "name", "ext", "checksum", "label_versions", "agreement", "scores", "lease")


def check_options(params: Any, schema: Mapping[str, Option], what: str) -> dict[str, Any]:
    """Check every option in ``params`` against ``schema``; return the clean values.

    Args:
        params: the request's options (a dict; ``None`` is an empty one).
        schema: option name -> :class:`Option`.
        what: the task, for messages (``"training of model 'x'"``).

    Raises:
        LabelZooError: naming the unknown option (with the known ones) or the bad value and what was expected.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise LabelZooError(f"the options of {what} must be a JSON object of name: value, got {type(params).__name__}")
    clean: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str) or name not in schema:
            raise LabelZooError(f"unknown option {name!r} for {what}; known options: {', '.join(sorted(schema))}")
        clean[name] = schema[name].check(value, name)
    return clean


def check_info(params: Any, what: str) -> dict[str, Any]:
    """Free-form info a client stores with an image or label: an inert JSON object without reserved keys."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise LabelZooError(f"{what} must be a JSON object, got {type(params).__name__}")
    reserved = sorted(k for k in params if k in INFO_RESERVED)
    if reserved:
        raise LabelZooError(f"{what} may not set {', '.join(map(repr, reserved))}: the server writes those")
    return check_inert(dict(params), what)


def parse_json_object(text_value: Any, name: str, max_bytes: int = 1_000_000) -> dict[str, Any]:
    """Parse a form field that must hold a JSON object (``params``, ``info``); ``""`` is ``{}``.

    Raises:
        LabelZooError: for text that is not JSON, too long, or JSON that is not an object.
    """
    if text_value is None or text_value == "":
        return {}
    if isinstance(text_value, Mapping):
        return dict(text_value)
    if not isinstance(text_value, str):
        raise LabelZooError(f"parameter {name!r} must be a JSON object, got {type(text_value).__name__}")
    if len(text_value) > max_bytes:
        raise LabelZooError(f"parameter {name!r} is {len(text_value)} characters long; at most {max_bytes}")
    try:
        value = json.loads(text_value)
    except ValueError as e:
        raise LabelZooError(f"parameter {name!r} is not valid JSON ({e})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LabelZooError(f"parameter {name!r} must be a JSON object such as {{}}, got {type(value).__name__}")
    return value
