"""The T-AutoML search loop on tiny synthetic data: trial log, Ctrl-C + --resume, the emitted bundle.

One module-scoped search (4 proxy trials of 3 iterations on 16^3 patches, a pool of 20, top 1) is
interrupted after 2 trials, its log torn, then resumed; the tests check what it left behind. The emitted
bundle goes through ``labelzoo bundle verify``: the static, network and TorchScript checks by default, the
real 1-epoch train / evaluate / inference run in a ``slow`` test (about 1-3 minutes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import labelzoo.automl.train as train_module
from labelzoo.automl import check_vector
from labelzoo.automl.search import SearchSettings, read_trials, run_search
from labelzoo.cli import main
from labelzoo.distributed.runner import RayOptions
from labelzoo.errors import LabelZooError

SETTINGS = {"budget": 4, "pool": 20, "top_k": 1, "proxy_iterations": 3, "full_iterations": 4,
            "patch_size": [16, 16, 16], "base_channels": 4, "seed": 3, "max_epochs": 2, "threads": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labelzoo.data import build_sample_studies

    out = tmp_path_factory.mktemp("automl") / "Task01_Synthetic"
    return build_sample_studies(out, n_images=5, n_labeled=4, shape=(32, 32, 32), seed=1, layout="msd")


@pytest.fixture(scope="module")
def searched(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """An interrupted search (Ctrl-C during the third trial), a torn log line, then --resume.

    Trials run in this process (``executor="inline"``) so that Ctrl-C lands inside one; the same search on
    Ray is in ``tests/unit/test_distributed.py``.
    """
    inline = RayOptions(executor="inline")
    out = tmp_path_factory.mktemp("search") / "run"
    real = train_module.train_config
    calls: list[int] = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "train_config", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_search(SearchSettings(dataset=str(dataset), **SETTINGS), out, ray=inline)
    before = (out / "trials.jsonl").read_text()
    with open(out / "trials.jsonl", "a") as f:
        f.write('{"phase": "proxy", "trial": 2, "vec')  # a crash while writing
    resumed: list[int] = []

    def counting(*args, **kwargs):
        resumed.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "train_config", counting)
        result = run_search(SearchSettings(dataset=str(dataset), **SETTINGS), out, resume=True, ray=inline)
    return {"out": out, "before": before, "result": result, "resumed_calls": len(resumed)}


def test_interrupted_search_keeps_finished_trials_and_resume_continues(searched):
    out = searched["out"]
    before = [json.loads(line) for line in searched["before"].splitlines()]
    assert [t["trial"] for t in before] == [0, 1]  # the two finished trials survived Ctrl-C
    trials = read_trials(out / "trials.jsonl")
    assert (out / "trials.jsonl").read_text().startswith(searched["before"])  # kept as they were
    assert [(t["phase"], t["trial"]) for t in trials] == [("proxy", 0), ("proxy", 1), ("proxy", 2), ("proxy", 3),
                                                          ("full", 0), ("full", 1)]
    # resume trained only what was missing: 2 proxy trials and the 2 full trainings (top 1 + best proxy)
    assert searched["resumed_calls"] == 4
    for t in trials:
        check_vector(t["vector"])
        assert 0.0 <= t["dice"] <= 1.0
        assert t["iterations"] == (3 if t["phase"] == "proxy" else 4) or t["diverged"]
    assert len({tuple(t["vector"]) for t in trials if t["phase"] == "proxy"}) == 4


def test_predictor_report_and_ranking(searched):
    out = searched["out"]
    report = json.loads((out / "predictor.json").read_text())
    assert report["n_observed"] == 4
    assert report["pool"]["size"] == 20 and len(report["pool"]["top"]) == 1
    ranking = json.loads((out / "ranking.json").read_text())
    proxy = [t for t in read_trials(out / "trials.jsonl") if t["phase"] == "proxy"]
    best_proxy = max(proxy, key=lambda t: t["dice"])["vector"]
    assert ranking["full_candidates"] == [report["pool"]["top"][0]["vector"], best_proxy]
    assert report["pool"]["top"][0]["vector"] not in [t["vector"] for t in proxy]  # an unseen configuration


def test_winner_is_emitted_as_a_bundle_that_verifies(searched, tmp_path):
    from labelzoo.bundle.verify import format_report, verify_bundle

    result = searched["result"]
    bundle = result.bundle
    assert bundle.name == "synthetic_ct_tautoml_segmentation"  # <anatomy>_<modality>_<method>_<task>
    full = [t for t in read_trials(searched["out"] / "trials.jsonl") if t["phase"] == "full"]
    assert result.dice == max(t["dice"] for t in full)
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert train["arch"] == result.winner
    assert train["network_def"]["_target_"] == "labelzoo.networks.tautoml.TAutoMLNet"
    assert train["network_def"]["arch"] == "@arch"
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert "labelzoo" in meta["required_packages_version"]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background", "1": "spleen", "2": "left kidney", "3": "liver"}
    assert (bundle / "models" / "model.pt").is_file()
    # static checks, verify_net_in_out and the TorchScript round trip; the real run is the slow test below
    problems = verify_bundle(bundle, run=False, workdir=tmp_path)
    assert problems == [], format_report(bundle.name, problems)


@pytest.mark.slow
def test_emitted_bundle_passes_the_full_verify_run(searched, tmp_path):
    """``labelzoo bundle verify`` with the real 1-epoch train, evaluate and inference runs."""
    from labelzoo.bundle.verify import format_report, verify_bundle

    bundle = searched["result"].bundle
    problems = verify_bundle(bundle, run=True, workdir=tmp_path)
    assert problems == [], format_report(bundle.name, problems)
    assert (tmp_path / "smoke" / "bundle" / "models" / "model.pt").is_file()
    assert any((tmp_path / "smoke" / "out_inference").iterdir())


def test_cli_refuses_to_overwrite_a_search_and_checks_resume(searched, dataset, capsys):
    out = searched["out"]
    assert main(["search", str(dataset), "--out", str(out), "--budget", "4"]) == 2
    assert "already holds a search (trials.jsonl): pass --resume" in capsys.readouterr().err
    same = ["--budget", "4", "--pool", "20", "--top_k", "1", "--patch", "16", "--proxy_iterations", "3",
            "--full_iterations", "4", "--base_channels", "4"]
    assert main(["search", str(dataset), "--out", str(out), "--resume", "--seed", "4", *same]) == 2
    assert "--seed is 4 but the search in" in capsys.readouterr().err
    assert main(["search", str(dataset), "--out", str(out), "--resume", *same[2:], "--budget", "5"]) == 2
    assert "--budget is 5 but the search in" in capsys.readouterr().err


def test_cli_bad_input(tmp_path, capsys):
    assert main(["search", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "dataset.json not found: DATASET must be a folder in MSD layout" in capsys.readouterr().err
    assert main(["search", str(tmp_path), "--budget", "2"]) == 2
    assert "--budget must be an integer of at least 3, got 2" in capsys.readouterr().err
    assert main(["search", str(tmp_path), "--patch", "8,8"]) == 2
    assert "--patch must be three sizes of at least 16" in capsys.readouterr().err
    assert main(["search", str(tmp_path), "--device", "gpu"]) == 2
    assert "--device must be cpu, cuda, cuda:N or auto, got 'gpu'" in capsys.readouterr().err
    assert main(["search", str(tmp_path), "--max_retries", "-1"]) == 2
    assert "--max_retries must be an integer of at least 0, got -1" in capsys.readouterr().err
    assert main(["search", str(tmp_path), "--ray_address", "nowhere"]) == 2
    assert "--ray_address must be auto, ray://HOST:PORT or HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for bad input


def test_a_torn_middle_line_is_an_error(tmp_path):
    log = tmp_path / "trials.jsonl"
    log.write_text('{"phase": "proxy", "trial": 0, "vec\n{"phase": "proxy"}\n')
    with pytest.raises(LabelZooError, match="line 1 is not a trial record"):
        read_trials(log)
