"""The MONAI model zoo's own pre-commit checks, as pure functions returning :class:`Problem` lists.

The model zoo (``Project-MONAI/model-zoo``) rejects a bundle whose docs or configs carry trailing whitespace or
lack a final newline, whose ``large_files.yml`` does not list the weights (``path``, ``url``, ``hash_type``,
``hash_val``; the ``url`` may stay empty until the weights are published) and whose metadata uses another
schema version than the rest of the zoo. ``labelzoo bundle verify`` runs these checks on every bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from labelzoo.bundle.problems import Problem

#: The metadata schema every LabelZoo bundle uses (the one shipped as ``labelzoo/bundle/schema/meta_schema.json``).
ZOO_SCHEMA = "meta_schema_20240725.json"
#: the metadata "schema" URL every bundle (repository, planned, searched) names
ZOO_SCHEMA_URL = f"https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/{ZOO_SCHEMA}"
#: Text files whose whitespace the zoo's pre-commit hooks check.
TEXT_SUFFIXES = frozenset({".md", ".json", ".yaml", ".yml", ".txt", ".rst"})
LARGE_FILE_FIELDS = ("path", "url", "hash_type", "hash_val")
HASH_TYPES = frozenset({"md5", "sha1", "sha256", "sha512"})


def check_text(rel: str, text: str) -> list[Problem]:
    """Trailing whitespace on any line, or a missing final newline, in the text of file ``rel``."""
    problems = []
    lines = text.split("\n")
    bad = [i + 1 for i, line in enumerate(lines) if line != line.rstrip()]
    if bad:
        shown = ", ".join(str(n) for n in bad[:10]) + (" ..." if len(bad) > 10 else "")
        problems.append(Problem("whitespace", rel, f"trailing whitespace on line(s) {shown}"))
    if text and not text.endswith("\n"):
        problems.append(Problem("whitespace", rel, "no newline at the end of the file"))
    return problems


def check_text_files(root: Path) -> list[Problem]:
    """:func:`check_text` on every docs/config text file of the bundle folder ``root`` (and large_files.yml)."""
    problems: list[Problem] = []
    files = [p for d in ("configs", "docs") if (root / d).is_dir() for p in sorted((root / d).rglob("*"))]
    files += [root / "large_files.yml", root / "large_files.yaml"]
    for path in files:
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as e:
                problems.append(Problem("whitespace", str(path.relative_to(root)), f"cannot read the file: {e}"))
                continue
            problems += check_text(str(path.relative_to(root)), text)
    return problems


def check_large_files_data(data: Any, rel: str = "large_files.yml") -> list[Problem]:
    """Check the parsed ``large_files.yml``: a non-empty ``large_files`` list of complete entries."""
    if not isinstance(data, Mapping) or "large_files" not in data:
        return [Problem("large_files", rel, "expected a mapping with a `large_files` list")]
    items = data["large_files"]
    if not isinstance(items, list) or not items:
        return [Problem("large_files", rel, "`large_files` must be a non-empty list (list models/model.pt with "
                        "an empty url until the weights are published)", "large_files")]
    problems = []
    for i, item in enumerate(items):
        where = f"large_files[{i}]"
        if not isinstance(item, Mapping):
            problems.append(Problem("large_files", rel, "expected a mapping with " + ", ".join(LARGE_FILE_FIELDS),
                                    where))
            continue
        missing = [f for f in LARGE_FILE_FIELDS if f not in item]
        if missing:
            problems.append(Problem("large_files", rel, f"missing field(s) {', '.join(missing)}", where))
            continue
        if not isinstance(item["path"], str) or not item["path"]:
            problems.append(Problem("large_files", rel, "`path` must be a non-empty relative path", where))
        elif Path(item["path"]).is_absolute() or ".." in Path(item["path"]).parts:
            problems.append(Problem("large_files", rel, f"`path` {item['path']!r} must stay inside the bundle", where))
        if item["url"]:
            if str(item["hash_type"]).lower() not in HASH_TYPES:
                problems.append(Problem("large_files", rel, f"`hash_type` must be one of {sorted(HASH_TYPES)} "
                                        "when a url is given", where))
            if not item["hash_val"]:
                problems.append(Problem("large_files", rel, "`hash_val` must be set when a url is given", where))
    return problems


def check_large_files(root: Path) -> list[Problem]:
    """Load and check ``large_files.yml`` (or ``.yaml``) of the bundle folder ``root``."""
    for name in ("large_files.yml", "large_files.yaml"):
        path = root / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
                return [Problem("large_files", name, f"cannot parse the file: {e}")]
            return check_large_files_data(data, name)
    return [Problem("large_files", "large_files.yml", "missing: the model zoo requires large_files.yml listing "
                    "the weights (path, url, hash_type, hash_val)")]


def check_schema_version(meta: Mapping[str, Any], file: str = "configs/metadata.json",
                         expected: str = ZOO_SCHEMA) -> list[Problem]:
    """The metadata's ``schema`` URL must name the zoo-wide schema version ``expected``."""
    schema = meta.get("schema")
    if not isinstance(schema, str) or schema.rstrip("/").rsplit("/", 1)[-1] != expected:
        return [Problem("schema", file, f"metadata schema {schema!r} differs from the one schema version every "
                        f"bundle uses ({expected})", "schema")]
    return []


def check_zoo(root: Path, meta: Mapping[str, Any] | None) -> list[Problem]:
    """All model-zoo pre-commit checks on the bundle folder ``root`` (``meta``: its parsed metadata.json)."""
    problems = check_text_files(root) + check_large_files(root)
    if isinstance(meta, Mapping):
        problems += check_schema_version(meta)
    return problems
