"""Vendor the ``labelzoo`` code a bundle's configs reference into the bundle's ``scripts/`` folder.

``labelzoo`` is not on the package index, so a bundle downloaded from a zoo must carry the code its configs
name. The model zoo's convention is a ``scripts/`` package in the bundle, imported as ``scripts.<module>``
when MONAI runs the bundle from its folder (``python -m monai.bundle run ...`` puts the working directory on
``sys.path``; MONAI Label inserts the bundle folder). :func:`vendor_bundle` works on a *packed copy*:

1. finds every dotted path ``labelzoo.x.y[.Name]`` in ``configs/*.json|yaml`` that names a module of the
   installed ``labelzoo`` package (``_target_`` values, ``$import`` / ``$from`` lines, expressions);
2. follows those modules' own ``labelzoo`` imports (module level and inside functions, absolute or
   relative), and the parent packages' ``__init__.py``, to a closed set of modules;
3. copies them to ``scripts/labelzoo/...`` (same tree), rewriting each absolute ``from labelzoo.a import b``
   to the equivalent relative import, so the copy imports only itself;
4. rewrites the configs' dotted paths ``labelzoo.`` -> ``scripts.labelzoo.`` and drops ``labelzoo`` from
   ``required_packages_version`` in ``metadata.json`` (the pin stays in the repository's bundle).

The repository keeps one source: nothing outside the copy is changed. Files are read as text and parsed
with :mod:`ast`; no vendored module is imported while packing.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from labelzoo.errors import LabelZooError

logger = logging.getLogger(__name__)

PACKAGE = "labelzoo"
#: where the vendored package goes inside the bundle, and the import prefix configs use for it
SCRIPTS = "scripts"
VENDORED_PREFIX = f"{SCRIPTS}.{PACKAGE}"
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
#: a dotted path starting with ``labelzoo.`` that is not part of a longer name (``scripts.labelzoo.x`` excluded)
_DOTTED = re.compile(r"(?<![\w.])labelzoo((?:\.[A-Za-z_]\w*)+)")
_FROM = re.compile(r"\bfrom\s+labelzoo((?:\.\w+)*)(\s+import\b)")


@dataclass
class VendorReport:
    """What :func:`vendor_bundle` did: modules copied and config files rewritten."""

    modules: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)


def package_root() -> Path:
    """The folder of the ``labelzoo`` package whose sources are vendored (this very installation)."""
    return Path(__file__).resolve().parents[1]


def module_file(name: str, root: Path | None = None) -> Path | None:
    """The source file of module ``name`` (``labelzoo.a.b``) under ``root``, or ``None`` if it is no module."""
    root = root or package_root()
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    path = root.joinpath(*parts[1:])
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def longest_module(dotted: str, root: Path | None = None) -> str | None:
    """The longest prefix of ``dotted`` (``labelzoo.transforms.ValidateImaged``) that is a module."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if module_file(name, root) is not None:
            return name
    return None


def referenced_modules(texts: dict[str, str], root: Path | None = None) -> set[str]:
    """The ``labelzoo`` modules named by dotted paths in config texts (file name -> text)."""
    found = set()
    for text in texts.values():
        for match in _DOTTED.finditer(text):
            module = longest_module(PACKAGE + match.group(1), root)
            if module is not None and module != PACKAGE:
                found.add(module)
    return found


def _package_of(module: str, file: Path) -> str:
    return module if file.name == "__init__.py" else module.rsplit(".", 1)[0]


def imported_modules(module: str, root: Path | None = None) -> set[str]:
    """The ``labelzoo`` modules ``module`` imports anywhere in its source (absolute or relative imports)."""
    file = module_file(module, root)
    if file is None:
        raise LabelZooError(f"{module}: no such module in {root or package_root()}")
    try:
        tree = ast.parse(file.read_text(), str(file))
    except SyntaxError as e:
        raise LabelZooError(f"{file}: cannot parse: {e}") from e
    package = _package_of(module, file)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE:
                found = longest_module(name, root)
                if found is not None:
                    out.add(found)
    return out


def module_closure(seeds: set[str], root: Path | None = None) -> list[str]:
    """``seeds`` plus every ``labelzoo`` module they import, transitively, and every parent package."""
    todo, seen = list(seeds), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(imported_modules(name, root) - seen)
    return sorted(seen)


def relative_imports(source: str, module: str, is_package: bool) -> str:
    """``source`` of ``module`` with each ``from labelzoo[.x] import y`` turned into a relative import."""
    depth = len(module.split(".")) - (0 if is_package else 1)

    def repl(match: re.Match[str]) -> str:
        return f"from {'.' * depth}{match.group(1)[1:]}{match.group(2)}"

    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names):
            raise LabelZooError(f"{module}: `import {PACKAGE}...` cannot be vendored; use `from {PACKAGE}.x import y`")
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == PACKAGE:
            i = node.lineno - 1
            new, count = _FROM.subn(repl, lines[i], count=1)
            if count != 1:
                raise LabelZooError(f"{module} line {node.lineno}: cannot rewrite the import {lines[i].strip()!r}")
            lines[i] = new
    return "".join(lines)


def rewrite_config(text: str, root: Path | None = None) -> str:
    """Config text with every dotted path naming a ``labelzoo`` module prefixed by ``scripts.``."""

    def repl(match: re.Match[str]) -> str:
        dotted = PACKAGE + match.group(1)
        module = longest_module(dotted, root)
        return f"{SCRIPTS}.{dotted}" if module is not None and module != PACKAGE else match.group(0)

    return _DOTTED.sub(repl, text)


def config_files(bundle: Path) -> list[Path]:
    """The config files of ``bundle`` that may name ``labelzoo`` code."""
    folder = bundle / "configs"
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES)


def vendor_bundle(bundle: str | Path, root: Path | None = None) -> VendorReport:
    """Vendor the ``labelzoo`` modules the configs of the bundle folder ``bundle`` need (in place: a copy!).

    Args:
        bundle: a *copy* of a bundle (the packed one); its configs are rewritten.
        root: the ``labelzoo`` package folder to copy from (this installation by default).

    Returns:
        The modules copied and the config files rewritten (both empty when no config names ``labelzoo``).

    Raises:
        LabelZooError: a module cannot be parsed or uses an import form that cannot be rewritten, or the
            bundle already has a ``scripts/labelzoo`` folder.
    """
    bundle = Path(bundle)
    root = root or package_root()
    files = config_files(bundle)
    texts = {str(p.relative_to(bundle)): p.read_text() for p in files}
    seeds = referenced_modules(texts, root)
    report = VendorReport()
    if not seeds:
        return report
    target = bundle / SCRIPTS / PACKAGE
    if target.exists():
        raise LabelZooError(f"{target}: already exists; the bundle must not ship its own {SCRIPTS}/{PACKAGE}")
    modules = module_closure(seeds, root)
    for module in modules:
        src = module_file(module, root)
        assert src is not None  # every closure member was found as a file
        rel = src.relative_to(root)
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(relative_imports(src.read_text(), module, src.name == "__init__.py"))
        shutil.copymode(src, dest)
    init = bundle / SCRIPTS / "__init__.py"
    if not init.exists():
        init.write_text(f'"""Code this bundle needs, vendored from {PACKAGE} by `labelzoo zoo pack`."""\n')
    for path in files:
        old = path.read_text()
        # metadata.json only loses the pin: its descriptions may name labelzoo code for the reader
        new = _drop_pin(old, path) if path.name == "metadata.json" else rewrite_config(old, root)
        if new != old:
            path.write_text(new)
            report.configs.append(str(path.relative_to(bundle)))
    report.modules = modules
    logger.info("vendored %d labelzoo modules into %s/%s/%s", len(modules), bundle.name, SCRIPTS, PACKAGE)
    return report


def _drop_pin(text: str, path: Path) -> str:
    """metadata.json text without ``labelzoo`` in ``required_packages_version`` (the code travels vendored)."""
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelZooError(f"{path}: not valid JSON: {e}") from e
    packages = meta.get("required_packages_version")
    if isinstance(packages, dict) and PACKAGE in packages:
        packages.pop(PACKAGE)
        return json.dumps(meta, indent=4) + "\n"
    return text
