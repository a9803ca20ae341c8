"""Trials and folds on a real local Ray instance (CPU): two at once, a failure recorded and retried, resume.

Failures are injected through ``LABELZOO_INJECT_TRIAL_FAILURES``: the first attempt of the named trial gets an
invalid configuration that the trial's own validation rejects inside the Ray worker (no mock). Each Ray start
costs a few seconds; the tests start it four times (search, a killed worker, train-cv, the resumed search) plus
once in the killed subprocess, about 1.5-2 minutes in all on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labelzoo.automl.search import INJECT_FAILURES_ENV, SearchSettings, read_trials, run_search
from labelzoo.distributed.runner import RayOptions, Task, TrialProgress, read_records, run_tasks
from labelzoo.errors import LabelZooError

SETTINGS = {"budget": 4, "pool": 20, "top_k": 1, "proxy_iterations": 6, "full_iterations": 4,
            "patch_size": [16, 16, 16], "base_channels": 4, "seed": 5, "max_epochs": 2}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from labelzoo.data import build_sample_studies

    out = tmp_path_factory.mktemp("ray") / "Task01_Synthetic"
    return build_sample_studies(out, n_images=5, n_labeled=4, shape=(32, 32, 32), seed=1, layout="msd")


def _overlap(a: dict, b: dict) -> bool:
    return a["started"] < b["finished"] and b["started"] < a["finished"]


def test_search_on_ray_runs_two_trials_at_once_and_retries_a_failed_one(dataset: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INJECT_FAILURES_ENV, "proxy/1")
    out = tmp_path / "search"
    result = run_search(SearchSettings(dataset=str(dataset), **SETTINGS), out,
                        ray=RayOptions(num_cpus=2, max_concurrent=2, max_retries=1))
    records = read_trials(out / "trials.jsonl", include_failed=True)
    failed = [r for r in records if r.get("status") == "failed"]
    assert [(r["phase"], r["trial"], r["attempt"], r["final"]) for r in failed] == [("proxy", 1, 1, False)]
    assert "block 0 type" in failed[0]["error"]  # the configuration check rejected it in the worker
    ok = [r for r in records if r.get("status") != "failed"]
    assert sorted((r["phase"], r["trial"]) for r in ok) == [("full", 0), ("full", 1)] + [("proxy", i) for i in range(4)]
    assert next(r for r in ok if r["phase"] == "proxy" and r["trial"] == 1)["attempt"] == 2  # the retry succeeded
    # two trials ran at the same time, in two Ray worker processes (not this one)
    proxy = [r for r in ok if r["phase"] == "proxy"]
    assert os.getpid() not in {r["pid"] for r in proxy}
    assert any(_overlap(a, b) and a["pid"] != b["pid"] for i, a in enumerate(proxy) for b in proxy[i + 1:])
    assert (result.bundle / "models" / "model.pt").is_file()


def test_a_trial_that_always_fails_is_recorded_and_the_search_goes_on(dataset: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # the same runner in this process (executor="inline"): no retry left, the search finishes without trial 2
    monkeypatch.setenv(INJECT_FAILURES_ENV, "proxy/2")
    out = tmp_path / "search"
    run_search(SearchSettings(dataset=str(dataset), **{**SETTINGS, "proxy_iterations": 2}), out,
               ray=RayOptions(executor="inline", max_retries=0))
    records = read_trials(out / "trials.jsonl", include_failed=True)
    assert [(r["trial"], r["final"]) for r in records if r.get("status") == "failed"] == [(2, True)]
    assert sorted(r["trial"] for r in read_trials(out / "trials.jsonl") if r["phase"] == "proxy") == [0, 1, 3]
    # --resume trains what never finished (the cause gone)
    monkeypatch.delenv(INJECT_FAILURES_ENV)
    run_search(SearchSettings(dataset=str(dataset), **{**SETTINGS, "proxy_iterations": 2}), out, resume=True,
               ray=RayOptions(executor="inline", max_retries=0))
    assert sorted(r["trial"] for r in read_trials(out / "trials.jsonl") if r["phase"] == "proxy") == [0, 1, 2, 3]


def _boom(x: int) -> int:
    raise RuntimeError(f"task {x} failed")


def test_runner_gives_up_after_max_retries_and_reports_every_attempt() -> None:
    seen: list[tuple[str, int, bool]] = []
    outcomes = run_tasks([Task("a", _boom, (1,))], RayOptions(executor="inline", max_retries=2),
                         on_done=lambda t, o: None,
                         on_failed=lambda t, o, final: seen.append((t.key, o.attempt, final)))
    assert seen == [("a", 1, False), ("a", 2, False), ("a", 3, True)]
    assert "RuntimeError: task 1 failed" in outcomes["a"].error
    with pytest.raises(LabelZooError, match="--max_concurrent must be an integer of at least 1"):
        RayOptions(max_concurrent=0).validate()
    with pytest.raises(LabelZooError, match="--gpus_per_trial must be a number of at least 0"):
        RayOptions(gpus_per_trial=-1).validate()


def test_progress_line_counts_done_running_failed_and_best() -> None:
    import io

    stream = io.StringIO()
    progress = TrialProgress("proxy", 4, done=1, best=0.25, stream=stream)  # resumed: 1 trial already done
    run_tasks([Task("a", _quick_task, ()), Task("b", _boom, (2,))], RayOptions(executor="inline", max_retries=0),
              on_done=lambda t, o: None, progress=progress)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("proxy [") and "2/4 done | running 0 | failed 0 | best 0.5000" in lines[0]
    assert "2/4 done | running 0 | failed 1 | best 0.5000" in lines[-1]


def _crash_once(marker: str) -> dict:
    """Kill the worker process itself on the first call (no exception: the process is gone), succeed after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed once")
        os._exit(1)
    return {"score": 1.0, "pid": os.getpid()}


def test_a_killed_ray_worker_is_recorded_and_retried(tmp_path: Path) -> None:
    failures: list[tuple[str, int, bool, str]] = []
    done: list[str] = []
    outcomes = run_tasks([Task("crash", _crash_once, (str(tmp_path / "marker"),)), Task("ok", _quick_task, ())],
                         RayOptions(num_cpus=2, max_concurrent=2, max_retries=1),
                         on_done=lambda t, o: done.append(t.key),
                         on_failed=lambda t, o, final: failures.append((t.key, o.attempt, final, o.error or "")))
    assert [(k, a, f) for k, a, f, _ in failures] == [("crash", 1, False)]
    assert "Worker" in failures[0][3] or "worker" in failures[0][3]  # Ray's worker-died error, recorded
    assert sorted(done) == ["crash", "ok"] and outcomes["crash"].attempt == 2


def _quick_task() -> dict:
    return {"score": 0.5}


def test_train_cv_on_ray_two_folds_at_once_a_failed_fold_retried_then_resume(msd_dataset: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from labelzoo.cli import main
    from labelzoo.planning.emit import emit_bundles
    from labelzoo.planning.fingerprint import extract_fingerprint
    from labelzoo.planning.planner import ExperimentPlanner

    fp = extract_fingerprint(msd_dataset)
    (bundle,) = emit_bundles(ExperimentPlanner().plan(fp), fp, tmp_path / "planned", msd_dataset,
                             configurations=["3d_fullres"])
    monkeypatch.setenv(INJECT_FAILURES_ENV, f"{bundle.name}/1")
    args = ["train-cv", str(bundle), "--folds", "2", "--num_epochs", "1", "--iterations_per_epoch", "1",
            "--num_workers", "0", "--max_concurrent", "2", "--max_retries", "1"]
    assert main(args) == 0
    log = bundle / "cv" / "folds.jsonl"
    records = read_records(log)
    failed = [r for r in records if r["status"] == "failed"]
    assert [(r["fold"], r["attempt"], r["final"]) for r in failed] == [(1, 1, False)]
    assert "NoSuchNetwork" in failed[0]["error"]  # MONAI could not build the injected network
    assert sorted((r["fold"], r["attempt"]) for r in records if r["status"] == "ok") == [(0, 1), (1, 2)]
    summary = json.loads((bundle / "cv" / "summary.json").read_text())
    assert len(summary["cases"]) == 3 and {c["fold"] for c in summary["cases"].values()} == {0, 1}
    # resume: both folds are finished, nothing is trained again (executor inline: no Ray needed to skip)
    monkeypatch.delenv(INJECT_FAILURES_ENV)
    assert main([*args, "--resume", "--executor", "inline"]) == 0
    assert read_records(log) == records


def test_resume_after_killing_the_driver_reruns_only_unfinished_trials(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "search"
    flags = ["--budget", "6", "--pool", "20", "--top_k", "1", "--proxy_iterations", "12", "--full_iterations", "4",
             "--patch", "16", "--base_channels", "4", "--seed", "5", "--max_epochs", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "labelzoo.cli", "search", str(dataset), "--out", str(out), *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = out / "trials.jsonl"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if len(read_trials(log)) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the search ended before it could be killed"
        proc.send_signal(signal.SIGKILL)  # the driver dies mid-search, without any clean-up
        proc.wait(timeout=30)
    finally:
        time.sleep(1)
        try:  # Ray's helper processes of the killed driver (its process group: started by this test)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = read_trials(log)
    finished = {(r["phase"], r["trial"]) for r in before}
    assert 2 <= len(finished) < 6 and all(phase == "proxy" for phase, _ in finished)
    killed_at = time.time()

    run_search(SearchSettings(dataset=str(dataset), budget=6, pool=20, top_k=1, proxy_iterations=12,
                              full_iterations=4, patch_size=[16, 16, 16], base_channels=4, seed=5, max_epochs=2),
               out, resume=True, ray=RayOptions(num_cpus=2))
    after = read_trials(log)
    proxy = [r for r in after if r["phase"] == "proxy"]
    assert sorted(r["trial"] for r in proxy) == list(range(6))  # each proxy trial finished exactly once
    rerun = {r["trial"] for r in proxy if r["started"] > killed_at}
    assert rerun == set(range(6)) - {t for _, t in finished}  # only the unfinished ones were trained again
    assert [r for r in after if r["phase"] == "full"]


@pytest.mark.slow
def test_search_joins_an_existing_cluster(dataset: Path, tmp_path: Path, free_port: int) -> None:
    """`ray start --head` (token authentication, as Ray 2.59+ wants) then `labelzoo search --ray_address`."""
    import secrets

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--port", str(free_port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out = tmp_path / "search"
        cmd = [sys.executable, "-m", "labelzoo.cli", "search", str(dataset), "--out", str(out), "--budget", "3",
               "--pool", "10", "--top_k", "1", "--proxy_iterations", "3", "--full_iterations", "3", "--patch", "16",
               "--base_channels", "4", "--ray_address", f"127.0.0.1:{free_port}", "--max_concurrent", "2"]
        deadline = time.monotonic() + 60
        while True:  # the head needs a few seconds before it accepts drivers
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if proc.returncode == 0 or time.monotonic() > deadline or "cannot connect" not in proc.stderr:
                break
            time.sleep(3)
        assert proc.returncode == 0, proc.stderr[-3000:]
        records = read_trials(out / "trials.jsonl")
        assert len(records) == 5 and all(r["pid"] != head.pid for r in records)
    finally:
        try:
            os.killpg(head.pid, signal.SIGKILL)  # the head and its workers: this test's process group
        except ProcessLookupError:
            pass
        head.wait(timeout=30)
