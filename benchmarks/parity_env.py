"""Create the separate environment the nnU-Net side of ``benchmarks/nnunet_parity.py`` runs in (``make parity-venv``).

nnU-Net v2 (the ``parity`` extra of pyproject.toml, ``nnunetv2==2.8.1``) needs numpy 2.x, while LabelZoo's
environment pins numpy 1.26: installing it there would change installed versions. This script makes its own
virtual environment (default ``.venv-parity``, git-ignored) and installs into it every package that pip resolves
for the ``parity`` extra **except PyTorch** (torch, torchvision, triton and the CUDA wheels, several GB): those
are taken from the LabelZoo environment through a ``.pth`` line appended *after* the parity environment's own
site-packages, so its own numpy / scipy / ... win and the same torch build runs both sides of the benchmark.
Nothing in the LabelZoo environment is changed.

Run: ``python benchmarks/parity_env.py [--venv .venv-parity] [--torch-from .venv]``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
#: Distributions taken from the LabelZoo environment instead of being downloaded again.
FROM_LABELZOO = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$", re.IGNORECASE)


def parity_requirements() -> list[str]:
    """The ``parity`` optional extra of pyproject.toml (``nnunetv2==2.8.1``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"]["parity"])


def site_packages(python: Path) -> str:
    """``purelib`` of an interpreter's environment."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(ROOT / ".venv-parity"), help="environment to create")
    parser.add_argument("--torch-from", default=sys.prefix,
                        help="environment whose torch is reused (default: the one running this script)")
    parser.add_argument("--python", default=None, help="base interpreter (default: this one's base)")
    args = parser.parse_args()
    venv = Path(args.venv).resolve()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = args.python or str(Path(sys.base_prefix) / "bin" / f"python{version}")
    py = venv / "bin" / "python"
    if not py.is_file():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    reqs = parity_requirements()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # resolve the whole dependency tree (metadata only), then install all of it but PyTorch without deps
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                        "--report", str(report), *reqs], check=True)
        resolved = [f"{i['metadata']['name']}=={i['metadata']['version']}"
                    for i in json.loads(report.read_text())["install"]]
    own = [r for r in resolved if not FROM_LABELZOO.match(r.split("==")[0])]
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", *own], check=True)
    torch_site = site_packages(Path(args.torch_from) / "bin" / "python")
    # a .pth line is appended to sys.path after the environment's own site-packages: its packages come first
    (Path(site_packages(py)) / "zz_torch_from_labelzoo.pth").write_text(torch_site + "\n")
    check = ("import numpy, torch, nnunetv2, importlib.metadata as m; "
             "print('nnunetv2', m.version('nnunetv2'), 'numpy', numpy.__version__, 'torch', torch.__version__)")
    print(subprocess.run([str(py), "-c", check], check=True, capture_output=True, text=True).stdout.strip())
    print(f"parity environment ready: {py} (torch from {torch_site}; {sysconfig.get_platform()})")


if __name__ == "__main__":
    main()
