"""The ``--conf`` keys the LabelZoo MONAI Label app understands, with defaults and help.

Pure data, shared by ``labelzoo serve`` (which rejects unknown keys before starting anything) and by
``apps/labelzoo/main.py`` (which reads the values). Values are strings, as MONAI Label passes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelzoo.errors import LabelZooError


@dataclass(frozen=True)
class ConfKey:
    """One app setting: its default (a string, as MONAI Label passes them) and what it does."""

    default: str
    help: str
    #: value type checked by :func:`check_conf`: "str", "bool", "int" or "float" (numbers within [low, high])
    kind: str = "str"
    low: float | None = None
    high: float | None = None


APP_CONF: dict[str, ConfKey] = {
    "models": ConfKey("all", "bundles to serve: 'all' or bundle names separated by '+' (or commas in the dict "
                      "form); NAME@VERSION pulls that version from --conf zoo"),
    "bundles": ConfKey("", "extra folders holding bundles (or a bundle), separated by commas"),
    # model zoo (labelzoo.zoo.cache): models=NAME@VERSION+OTHER names zoo bundles, pulled at start
    "zoo": ConfKey("", "model zoo (http(s):// or file:// URL, or a folder) that models=NAME@VERSION entries, and "
                   "names not found on disk, are pulled from at start (checksum-verified, cached)"),
    "zoo_cache": ConfKey("", "folder caching pulled zoo bundles, one per version (default $LABELZOO_ZOO_CACHE or "
                         "~/.cache/labelzoo/zoo); served from there when the zoo is unreachable"),
    "skip_trainers": ConfKey("false", "'true' serves inference only (no training tasks)"),
    "skip_scoring": ConfKey("false", "'true' registers no scoring methods"),
    "device": ConfKey("auto", "'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'"),
    # active learning and scoring (apps/labelzoo/lib/strategies.py, scoring.py)
    "scoring_model": ConfKey("", "bundle whose uncertainty the strategies rank on (default: the first served bundle)"),
    "epistemic_samples": ConfKey("5", "Monte-Carlo dropout forward passes per image for the epistemic score",
                                 "int", 1, 100),
    "epistemic_dropout": ConfKey("0.2", "dropout rate applied to the network's dropout layers while scoring",
                                 "float", 0.0, 0.9),
    "tta_samples": ConfKey("5", "test-time augmentations per image for the tta score (2 to 7)", "int", 2, 7),
    "strategy_k": ConfKey("3", "epistemic/tta strategies: rotate through the top k uncertain images", "int", 1, 10_000),
    "hybrid_alpha": ConfKey("0.5", "hybrid strategy: weight of uncertainty against diversity (0 to 1)",
                            "float", 0.0, 1.0),
    "scoring_interval": ConfKey("2", "seconds between the scoring worker's checks for new weights or images",
                                "float", 0.1, 3600),
    "save_original": ConfKey("true", "store each suggestion as label tag 'original' (the dice score compares to it)",
                             "bool"),
    "zoo_publish": ConfKey("", "zoo folder (served by a web server at --conf zoo) that POST "
                           "/labelzoo/models/<name>/release publishes retrained bundles to; empty: release is off"),
    # limits and access (apps/labelzoo/lib/routes.py): what one request may cost, who may replace weights
    "max_upload_mb": ConfKey("512", "largest upload (image, label, weights) in MiB; larger ones get HTTP 413",
                             "int", 1, 1_000_000),
    "max_image_voxels": ConfKey("200000000", "largest image or label in voxels, read from its header before any "
                                "voxel is loaded (HTTP 413); the default fits a 512x512x760 CT",
                                "int", 1, 10**12),
    "infer_concurrency": ConfKey("1", "inferences that run at once per model (the rest wait in a queue)",
                                 "int", 1, 64),
    "infer_queue": ConfKey("8", "inferences that may wait per model; more get HTTP 429", "int", 0, 10_000),
    "allow_model_upload": ConfKey("false", "'true' enables PUT/DELETE /model/<name> (replacing or deleting weights)",
                                  "bool"),
    # several annotators (labelzoo.annotators)
    "reads_per_image": ConfKey("1", "independent labels wanted per image; above 1 each annotator's label is kept and "
                               "their consensus becomes the final label", "int", 1, 20),
    "lease_minutes": ConfKey("30", "an image handed out by next_sample is that annotator's until idle this long",
                             "float", 0.005, 10_080),
    "consensus": ConfKey("majority", "consensus of several reads: 'majority' (vote) or 'staple' (SimpleITK STAPLE)"),
}

TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


def parse_conf(conf: dict | str | None) -> dict[str, str]:
    """Turn ``--conf`` into a dict of strings and reject unknown keys.

    Accepts a dict (``--conf '{"models": "all"}'``) or a string of ``key=value`` pairs separated by
    commas or semicolons (``--conf models=all,skip_scoring=true``). A value holding commas (a list)
    must be given in the dict form.

    Raises:
        LabelZooError: naming the unknown key and listing the known ones, or a malformed pair.

    Example:
        >>> parse_conf("skip_scoring=true")
        {'skip_scoring': 'true'}
    """
    if conf is None or conf == "":
        return {}
    if isinstance(conf, dict):
        items = {str(k): v for k, v in conf.items()}
    elif isinstance(conf, str):
        items = {}
        for pair in filter(None, (p.strip() for p in conf.replace(";", ",").split(","))):
            if "=" not in pair:
                raise LabelZooError(f"--conf entry {pair!r} is not key=value (known keys: {', '.join(APP_CONF)})")
            key, value = pair.split("=", 1)
            items[key.strip()] = value.strip()
    else:
        raise LabelZooError(f"--conf must be key=value pairs or a dict, got {conf!r}")
    unknown = sorted(set(items) - set(APP_CONF))
    if unknown:
        raise LabelZooError(f"unknown --conf key {', '.join(map(repr, unknown))}; known keys: {', '.join(APP_CONF)}")
    return {k: _as_str(v) for k, v in items.items()}


def _as_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def conf_value(conf: dict[str, str], key: str) -> str:
    """The value of ``key`` in ``conf``, or its default."""
    return str(conf.get(key, APP_CONF[key].default))


def conf_bool(conf: dict[str, str], key: str) -> bool:
    """A boolean setting; raises :class:`LabelZooError` for a value that is not a yes/no word."""
    value = conf_value(conf, key).strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise LabelZooError(f"--conf {key} must be true or false, got {value!r}")


def conf_number(conf: dict[str, str], key: str) -> float | int:
    """A numeric setting, checked against its type and range in :data:`APP_CONF`.

    Raises:
        LabelZooError: naming the key, the expected type and range, and the value given.
    """
    spec = APP_CONF[key]
    raw = conf_value(conf, key).strip()
    cast = int if spec.kind == "int" else float
    try:
        value = cast(raw)
    except ValueError:
        expected = "an integer" if cast is int else "a number"
        raise LabelZooError(f"--conf {key} must be {expected}, got {raw!r}") from None
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise LabelZooError(f"--conf {key} must be between {spec.low:g} and {spec.high:g}, got {raw}")
    return value


def check_conf(conf: dict[str, str]) -> dict[str, str]:
    """Check every typed setting in ``conf`` (booleans and numbers); return ``conf`` unchanged.

    Raises:
        LabelZooError: for the first value of the wrong type or out of range.
    """
    for key in conf:
        kind = APP_CONF[key].kind if key in APP_CONF else "str"
        if kind == "bool":
            conf_bool(conf, key)
        elif kind in ("int", "float"):
            conf_number(conf, key)
    return conf
