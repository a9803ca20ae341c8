"""`labelzoo bundle verify` over every bundle in bundles/, and each check failing on a broken copy.

The parametrized test covers every folder in ``bundles/`` automatically (later bundles included) with the
full verification: static checks, network checks and the real 1-epoch train / evaluate / inference run
through ``python -m monai.bundle run``. The broken-copy tests run only the static checks (``run=False``),
which stop before the network checks once a problem is found, so they are fast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labelzoo.bundle.problems import Problem
from labelzoo.bundle.verify import format_report, verify_bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs").is_dir())
UNETR = REPO / "bundles" / "btcv_ct_unetr_segmentation"


def _variants(bundle: Path) -> list[str | None]:
    """None (the bundle as is) plus every override file its configs/smoke.json lists under "variants"."""
    smoke = bundle / "configs" / "smoke.json"
    listed = json.loads(smoke.read_text()).get("variants", []) if smoke.is_file() else []
    return [None, *listed]


CASES = [(b, v) for b in BUNDLES for v in _variants(b)]


@pytest.mark.parametrize(("bundle", "variant"), CASES,
                         ids=[b.name + (f"+{Path(v).stem}" if v else "") for b, v in CASES])
def test_every_bundle_verifies(bundle: Path, variant: str | None, tmp_path: Path) -> None:
    problems = verify_bundle(bundle, run=True, variant=variant, workdir=tmp_path)
    assert problems == [], format_report(bundle.name, problems)
    # the real run left real outputs: weights from training, a prediction per test image
    assert (tmp_path / "smoke" / "bundle" / "models" / "model.pt").is_file()
    assert any((tmp_path / "smoke" / "out_inference").iterdir())
    # and nothing was written into the bundle itself
    assert not (bundle / "eval").exists()


def test_bundle_folders_exist() -> None:
    assert UNETR in BUNDLES


# ----------------------------------------------------------------------------------------------------------
# broken copies: each check names the file and the config id
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A private copy of the UNETR bundle to break."""
    dst = tmp_path / UNETR.name
    shutil.copytree(UNETR, dst, ignore=shutil.ignore_patterns("models", "eval"))
    return dst


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=4) + "\n")


def _find(problems: list[Problem], check: str, file: str, config_id: str | None = None) -> Problem:
    hits = [p for p in problems if p.check == check and p.file == file and (config_id is None or p.id == config_id)]
    assert hits, f"no {check} problem for {file}#{config_id} in:\n" + "\n".join(map(str, problems))
    return hits[0]


def test_missing_file(broken: Path) -> None:
    (broken / "docs" / "README.md").unlink()
    (broken / "large_files.yml").unlink()
    problems = verify_bundle(broken, run=False)
    assert "missing" in _find(problems, "layout", "docs/README.md").message
    assert "models/model.pt" in _find(problems, "layout", "large_files.yml").message


def test_version_not_in_changelog(broken: Path) -> None:
    _edit(broken / "configs" / "metadata.json", lambda m: m.update(version="0.2.0"))
    problem = _find(verify_bundle(broken, run=False), "metadata", "configs/metadata.json", "changelog")
    assert "0.2.0" in problem.message
    assert str(problem).startswith("configs/metadata.json#changelog: version '0.2.0'")


def test_metadata_schema_names_the_field(broken: Path) -> None:
    def change(m):
        m["network_data_format"]["inputs"]["image"]["num_channels"] = "one"
        del m["copyright"]

    _edit(broken / "configs" / "metadata.json", change)
    problems = verify_bundle(broken, run=False)
    assert "'one' is not of type 'integer'" in _find(
        problems, "metadata", "configs/metadata.json", "network_data_format#inputs#image#num_channels").message
    assert any("'copyright' is a required property" in p.message for p in problems)


def test_missing_monailabel_infer_id(broken: Path) -> None:
    _edit(broken / "configs" / "inference.json", lambda c: c.pop("inferer"))
    problems = verify_bundle(broken, run=False)
    assert "BundleInferTask" in _find(problems, "monailabel", "configs/inference.json", "inferer").message
    _find(problems, "properties", "configs/inference.json", "inferer")


def test_missing_monailabel_train_id(broken: Path) -> None:
    _edit(broken / "configs" / "train.json", lambda c: c["validate"]["dataset"].pop("data"))
    problem = _find(verify_bundle(broken, run=False), "monailabel", "configs/train.json", "validate#dataset#data")
    assert "BundleTrainTask" in problem.message


def test_trainer_ignoring_train_handlers(broken: Path) -> None:
    _edit(broken / "configs" / "train.json", lambda c: c["train"]["trainer"].update(train_handlers=[]))
    _find(verify_bundle(broken, run=False), "monailabel", "configs/train.json", "train#trainer#train_handlers")


def test_wrong_data_key(broken: Path) -> None:
    _edit(broken / "configs" / "inference.json",
          lambda c: c["postprocessing"]["transforms"][3].update(keys="prediction"))
    problem = _find(verify_bundle(broken, run=False), "keys", "configs/inference.json",
                    "postprocessing#transforms#3#keys")
    assert "['prediction']" in problem.message and "SaveImaged" in problem.message


def test_channel_def_must_match_outputs(broken: Path) -> None:
    _edit(broken / "configs" / "metadata.json",
          lambda m: m["network_data_format"]["outputs"]["pred"]["channel_def"].pop("13"))
    problem = _find(verify_bundle(broken, run=False), "monailabel", "configs/metadata.json",
                    "network_data_format#outputs#pred#channel_def")
    assert "num_channels=14" in problem.message


def test_labelzoo_reference_must_be_pinned(broken: Path) -> None:
    _edit(broken / "configs" / "metadata.json", lambda m: m["required_packages_version"].pop("labelzoo"))
    problem = _find(verify_bundle(broken, run=False), "metadata", "configs/metadata.json",
                    "required_packages_version")
    assert "configs/inference.json" in problem.message


def test_json_syntax_error(broken: Path) -> None:
    path = broken / "configs" / "evaluate.json"
    path.write_text(path.read_text().replace('"run":', '"run"', 1))
    problem = _find(verify_bundle(broken, run=False), "json", "configs/evaluate.json")
    assert "line" in problem.message and "column" in problem.message


def test_variant_id_that_applies_nowhere(broken: Path) -> None:
    variant = broken / "configs" / "baseline.json"
    variant.write_text(json.dumps({"nosuch#thing": 1}) + "\n")
    problem = _find(verify_bundle(broken, run=False, variant="configs/baseline.json"), "variant",
                    "configs/baseline.json", "nosuch#thing")
    assert "nosuch" in problem.message


def test_smoke_file_unknown_section(broken: Path) -> None:
    _edit(broken / "configs" / "smoke.json", lambda s: s.update(trian={"max_epochs": 1}))
    _find(verify_bundle(broken, run=False), "smoke", "configs/smoke.json", "trian")


def test_network_shape_mismatch(broken: Path) -> None:
    """verify_net_in_out catches out_channels disagreeing with metadata (static checks all pass)."""
    def change(m):
        pred = m["network_data_format"]["outputs"]["pred"]
        pred["num_channels"] = 13
        pred["channel_def"].pop("13")

    _edit(broken / "configs" / "metadata.json", change)
    problem = _find(verify_bundle(broken, run=False), "network", "configs/inference.json", "network_def")
    assert "13" in problem.message


def test_cli_prints_file_and_id_and_exits_1(broken: Path) -> None:
    _edit(broken / "configs" / "train.json", lambda c: c.pop("network"))
    proc = subprocess.run([sys.executable, "-m", "labelzoo.cli", "bundle", "verify", str(broken), "--norun"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "configs/train.json#network: MONAI Label's BundleTrainTask reads or overrides this id: missing" \
        in proc.stderr


def test_cli_missing_folder(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "labelzoo.cli", "bundle", "verify", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("labelzoo: error: bundle folder")
