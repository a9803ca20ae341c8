"""The 3D Slicer extension checked without Slicer: UI <-> code, CMake lists, Lib isolation, catalog entry."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import EXTENSION_DIR, MODULE_DIR

MODULE_PY = MODULE_DIR / "LabelZoo.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LabelZoo.ui"
LIB_DIR = MODULE_DIR / "LabelZooLib"
SCHEMA = EXTENSION_DIR / "Schemas" / "slicer-extension-catalog-entry-schema-v1.0.2.json"
CATALOG_ENTRY = EXTENSION_DIR / "LabelZoo.json"
FORBIDDEN = ("slicer", "qt", "ctk", "vtk")


def cmake_lists(path: Path) -> dict[str, list[str]]:
    """``set(NAME values...)`` of a CMakeLists.txt, with ``${VAR}`` substituted from earlier sets."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    variables: dict[str, list[str]] = {}
    for name, body in re.findall(r"set\(\s*(\w+)\s+(.*?)\)", text, flags=re.S):
        items = re.findall(r'"[^"]*"|\S+', body)
        values = []
        for item in items:
            item = item.strip('"')
            for var, val in variables.items():
                item = item.replace("${" + var + "}", " ".join(val))
            values.append(item)
        variables[name] = values
    return variables


def module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text())


def ui_names() -> set[str]:
    root = ET.parse(UI_FILE).getroot()
    return {el.get("name") for el in root.iter() if el.tag in ("widget", "layout", "spacer") and el.get("name")}


def test_every_self_ui_name_exists_in_the_ui_file():
    used = {node.attr for node in ast.walk(module_tree())
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert len(used) > 20, "the module should use its widgets through self.ui"
    missing = used - ui_names()
    assert not missing, f"self.ui names absent from {UI_FILE.name}: {sorted(missing)}"


def test_ui_file_declares_its_custom_widgets():
    root = ET.parse(UI_FILE).getroot()
    declared = {el.findtext("class") for el in root.iter("customwidget")}
    used = {el.get("class") for el in root.iter("widget")}
    custom = {c for c in used if not c.startswith("Q")}
    assert custom <= declared, f"custom widget classes without a <customwidget>: {custom - declared}"
    names = [el.get("name") for el in root.iter("widget")]
    assert len(names) == len(set(names)), "widget names in the .ui must be unique"


def test_every_connected_slot_exists():
    tree = module_tree()
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LabelZooWidget")
    methods = {n.name for n in widget.body if isinstance(n, ast.FunctionDef)}
    slots = {call.args[0].attr for call in ast.walk(widget)
             if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "connect"
             and call.args and isinstance(call.args[0], ast.Attribute)
             and isinstance(call.args[0].value, ast.Name) and call.args[0].value.id == "self"}
    assert slots and slots <= methods, f"connected slots not defined: {slots - methods}"


def test_module_has_the_scripted_module_classes_and_no_http_code():
    tree = module_tree()
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"LabelZoo", "LabelZooWidget", "LabelZooLogic", "LabelZooTest"} <= classes
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not imported & {"urllib", "requests", "http", "cgi", "json"}, "HTTP and JSON belong in LabelZooLib"


def test_every_script_and_resource_is_listed_in_cmake_and_exists():
    lists = cmake_lists(MODULE_DIR / "CMakeLists.txt")
    scripts, resources = lists["MODULE_PYTHON_SCRIPTS"], lists["MODULE_PYTHON_RESOURCES"]
    for listed in scripts + resources:
        assert (MODULE_DIR / listed).is_file(), f"{listed} is listed in LabelZoo/CMakeLists.txt but does not exist"
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.glob("*.py")}
    on_disk |= {p.relative_to(MODULE_DIR).as_posix() for p in LIB_DIR.glob("*.py")}
    assert on_disk == set(scripts), f"scripts not listed: {on_disk - set(scripts)}; stale: {set(scripts) - on_disk}"
    files = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert files == set(resources), f"resources not listed: {files - set(resources)}; stale: {set(resources) - files}"
    loaded = set(re.findall(r'resourcePath\(\s*"([^"]+)"\s*\)', MODULE_PY.read_text()))
    assert "UI/LabelZoo.ui" in loaded
    unlisted = {f"Resources/{p}" for p in loaded} - set(resources)
    assert not unlisted, f"LabelZoo.py loads resources missing from CMakeLists.txt: {unlisted}"


def test_testing_folder_is_wired():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule" in text and "add_subdirectory(Testing)" in text
    assert "add_subdirectory(Python)" in (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text()
    scripts = re.findall(r"SCRIPT\s+(\S+)\)", (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text())
    assert scripts and all((MODULE_DIR / "Testing" / "Python" / s).is_file() for s in scripts)


def test_extension_cmake_metadata():
    lists = cmake_lists(EXTENSION_DIR / "CMakeLists.txt")
    for var in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert var in lists, f"{var} missing from slicer_extension/CMakeLists.txt"
    text = (EXTENSION_DIR / "CMakeLists.txt").read_text()
    assert "add_subdirectory(LabelZoo)" in text and "Slicer_EXTENSION_CPACK" in text
    icon = lists["EXTENSION_ICONURL"][0].split("/main/", 1)[1]
    assert (EXTENSION_DIR.parent / icon).is_file(), f"EXTENSION_ICONURL names {icon}, absent from the repository"
    assert (EXTENSION_DIR.parent / icon).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    category = " ".join(lists["EXTENSION_CATEGORY"])
    assert json.loads(CATALOG_ENTRY.read_text())["category"] == category
    assert f'categories = ["{category}"]' in MODULE_PY.read_text()


def test_catalog_entry_validates_against_the_extensions_index_schema():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    entry = json.loads(CATALOG_ENTRY.read_text())
    jsonschema.validate(entry, schema)
    assert entry["$schema"] == schema["$id"], "the entry must name the schema version it follows"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**entry, "scmurl": "old-style key"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in entry.items() if k != "scm_url"}, schema)


def test_lib_never_imports_slicer_qt_ctk_vtk():
    for path in LIB_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            bad = [n for n in names if n.split(".")[0] in FORBIDDEN]
            assert not bad, f"{path.name} imports {bad}: LabelZooLib must stay plain Python"


def test_lib_imports_with_slicer_qt_ctk_vtk_unimportable():
    code = f"""
import importlib, importlib.abc, pkgutil, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {FORBIDDEN!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
for name in {FORBIDDEN!r}:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
    else:
        raise SystemExit("the block does not work for " + name)
sys.path.insert(0, {str(MODULE_DIR)!r})
import LabelZooLib
for info in pkgutil.iter_modules(LabelZooLib.__path__):
    importlib.import_module("LabelZooLib." + info.name)
assert not [m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r}]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.slicer
def test_module_self_test_runs_in_slicer(tmp_path):
    """Load the module into a real 3D Slicer (when installed) and run LabelZooTest."""
    script = tmp_path / "run.py"
    script.write_text(
        "import slicer, sys\n"
        "try:\n"
        "    slicer.util.selectModule('LabelZoo')\n"
        "    import LabelZoo\n"
        "    LabelZoo.LabelZooTest().runTest()\n"
        "except Exception:\n"
        "    import traceback; traceback.print_exc(); slicer.util.exit(1)\n"
        "else:\n"
        "    slicer.util.exit(0)\n"
    )
    cmd = [shutil.which("Slicer"), "--no-splash", "--no-main-window", "--testing",
           "--additional-module-paths", str(MODULE_DIR), "--python-script", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
