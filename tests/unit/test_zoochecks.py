"""The model zoo's pre-commit checks (labelzoo.bundle.zoochecks): pure functions and the repo's bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labelzoo.bundle.zoochecks import (
    ZOO_SCHEMA,
    check_large_files,
    check_large_files_data,
    check_schema_version,
    check_text,
    check_zoo,
)
from labelzoo.paths import repo_root

BUNDLES = sorted(p for p in (repo_root() / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
ENTRY = {"path": "models/model.pt", "url": "", "hash_type": "", "hash_val": ""}


def test_text_whitespace_and_final_newline() -> None:
    assert check_text("docs/README.md", "a\nb\n") == []
    assert check_text("empty.md", "") == []
    [p] = check_text("docs/README.md", "ok\nbad  \nok\n\t\n")
    assert p.check == "whitespace" and p.file == "docs/README.md" and "line(s) 2, 4" in p.message
    [p] = check_text("configs/train.json", "{}")
    assert "no newline at the end" in p.message


def test_large_files_entries() -> None:
    assert check_large_files_data({"large_files": [ENTRY]}) == []
    published = {**ENTRY, "url": "https://zoo/x.pt", "hash_type": "sha256", "hash_val": "ab" * 32}
    assert check_large_files_data({"large_files": [published]}) == []
    [p] = check_large_files_data({"large_files": []})
    assert "non-empty" in p.message and p.id == "large_files"
    [p] = check_large_files_data({"large_files": [{"path": "models/model.pt", "url": ""}]})
    assert "hash_type" in p.message and "hash_val" in p.message and p.id == "large_files[0]"
    found = check_large_files_data({"large_files": [{**ENTRY, "url": "https://zoo/x.pt", "hash_type": "crc"}]})
    assert len(found) == 2 and "`hash_type` must be one of" in found[0].message and "`hash_val`" in found[1].message
    [p] = check_large_files_data({"large_files": [{**ENTRY, "path": "../outside.pt"}]})
    assert "inside the bundle" in p.message
    [p] = check_large_files_data(["not", "a", "mapping"])
    assert "`large_files` list" in p.message


def test_large_files_file(tmp_path: Path) -> None:
    [p] = check_large_files(tmp_path)
    assert p.file == "large_files.yml" and "missing" in p.message
    (tmp_path / "large_files.yml").write_text("large_files: [\n")
    [p] = check_large_files(tmp_path)
    assert "cannot parse" in p.message


def test_schema_version() -> None:
    url = f"https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/{ZOO_SCHEMA}"
    assert check_schema_version({"schema": url}) == []
    [p] = check_schema_version({"schema": url.replace(ZOO_SCHEMA, "meta_schema_20220324.json")})
    assert p.check == "schema" and p.id == "schema" and ZOO_SCHEMA in p.message
    assert check_schema_version({})


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_repo_bundles_pass_zoo_checks(bundle: Path) -> None:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert check_zoo(bundle, meta) == []


def test_all_repo_bundles_share_one_schema() -> None:
    schemas = {json.loads((b / "configs" / "metadata.json").read_text())["schema"] for b in BUNDLES}
    assert len(schemas) == 1


def test_zoo_checks_catch_a_broken_copy(tmp_path: Path) -> None:
    bundle = shutil.copytree(BUNDLES[0], tmp_path / BUNDLES[0].name, ignore=shutil.ignore_patterns("models", "eval"))
    readme = bundle / "docs" / "README.md"
    readme.write_text(readme.read_text() + "trailing   \nlast line")
    (bundle / "large_files.yml").write_text("large_files: []\n")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    found = {(p.check, p.file) for p in check_zoo(bundle, meta)}
    assert found == {("whitespace", "docs/README.md"), ("large_files", "large_files.yml")}
