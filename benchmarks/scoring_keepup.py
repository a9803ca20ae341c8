"""Does scoring keep up? Time from a new model version to a re-scored pool, and ``/info/`` latency meanwhile.

A live LabelZoo server (``labelzoo serve``) with a small planned 3D bundle and a pool of ``--pool`` synthetic CT
images, one of them labelled. The model is trained once (``POST /train``) so it has weights and the in-process
scoring worker scores the pool. Then, ``--versions`` times: a new model version is installed (the weights file
replaced atomically, as a training run's ``CheckpointSaver`` does) and this process polls ``GET /info/`` every
``--interval`` s until every scoring method (epistemic, tta, boundary) reports the pool scored with the new
weights. Prints, per version, the seconds from the new weights to the re-scored pool and the ``/info/`` latency
(p50 / p95 / max) while scoring, against the same latency with the server idle (the baseline, same run).

    nice -n 10 python benchmarks/scoring_keepup.py                   # CPU: minutes, depends on the load
    python benchmarks/scoring_keepup.py --pool 24 --shape 48,48,32   # a bigger pool
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labelzoo.data import build_sample_studies
from labelzoo.planning.emit import emit_bundles
from labelzoo.planning.fingerprint import extract_fingerprint
from labelzoo.planning.planner import ExperimentPlanner
from labelzoo.simulate.commands import _stop_on_sigterm
from labelzoo.simulate.loop import Trainer, prepare_bundle, thread_env
from labelzoo.simulate.server import local_server

METHODS = ("epistemic", "tta", "boundary")
SMALL = {"network_def#filters": [8, 16, 32, 64], "num_workers": 0}


def model_values(label: Path, out: Path) -> Path:
    """The label in the planned model's values (dataset values 0, 1, 3, 6 -> 0, 1, 2, 3), as the app stores it."""
    import nibabel as nib
    import numpy as np

    img = nib.load(str(label))
    data = np.rint(np.asarray(img.dataobj)).astype(np.int64)
    values = np.unique(data)
    nib.save(nib.Nifti1Image(np.searchsorted(values, data).astype(np.uint8), img.affine), str(out))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def poll_info(url: str) -> tuple[float, dict[str, Any]]:
    """One ``GET /info/``: (seconds, the scoring methods' worker status)."""
    import requests

    t = time.perf_counter()
    r = requests.get(f"{url}/info/", timeout=60)
    dt = time.perf_counter() - t
    r.raise_for_status()
    scoring = r.json().get("scoring") or {}
    return dt, {m: (scoring.get(m) or {}).get("status") or {} for m in METHODS}


def settled(status: dict[str, dict[str, Any]], since: float) -> bool:
    """Every method idle with nothing pending, after a pass that started at or after ``since`` (epoch seconds)."""
    return all(s.get("state") == "idle" and s.get("pending") == 0 and float(s.get("started") or 0) >= since
               for s in status.values())


def wait_scored(url: str, since: float, interval: float,
                timeout: float) -> tuple[float, list[float], dict[str, float]]:
    """Poll ``/info/`` until the pool is scored with weights newer than ``since``; (seconds taken, latencies,
    seconds each method's pass took)."""
    lat = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        dt, status = poll_info(url)
        lat.append(dt)
        if settled(status, since):
            return time.time() - since, lat, {m: float(s.get("last_run_s") or 0) for m, s in status.items()}
        time.sleep(interval)
    raise TimeoutError(f"the pool was not re-scored within {timeout:.0f} s: {status}")


def stats(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"p50 {statistics.median(ms):6.1f} ms  p95 {percentile(ms, 0.95):6.1f} ms  max {max(ms):6.1f} ms "
            f"(n={len(ms)})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=int, default=8, help="unlabelled images the worker scores")
    p.add_argument("--shape", default="32,32,24")
    p.add_argument("--versions", type=int, default=1, help="new model versions to time")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between /info/ requests")
    p.add_argument("--idle", type=float, default=8.0, help="seconds of idle /info/ polling (the baseline)")
    p.add_argument("--samples", default="epistemic_samples=3,tta_samples=3", help="server --conf for scoring")
    p.add_argument("--no_mirroring", action="store_true",
                   help="score without the planned bundle's test-time mirroring (8 flips per prediction in 3D)")
    p.add_argument("--threads", type=int, default=0,
                   help="server CPU threads (OMP_NUM_THREADS, as labelzoo simulate --threads); 0: torch's default")
    p.add_argument("--out", default="benchmarks/results/scoring_keepup.json")
    args = p.parse_args(argv)
    from monailabel.client import MONAILabelClient

    _stop_on_sigterm()  # a timeout or Ctrl-C stops the server this run started
    work = Path(tempfile.mkdtemp(prefix="labelzoo-keepup-"))
    try:
        data = build_sample_studies(work / "msd", n_images=args.pool + 1, n_labeled=args.pool + 1, shape=args.shape,
                                    seed=7, layout="msd")
        fp = extract_fingerprint(data)
        (planned,) = emit_bundles(ExperimentPlanner().plan(fp), fp, work / "planned", data,
                                  configurations=["3d_fullres"])
        infer = {**SMALL, **({"use_mirroring": False} if args.no_mirroring else {})}
        bundle = prepare_bundle(planned, work / "bundles", {**SMALL, "iterations_per_epoch": 2}, infer)
        conf = {"models": bundle.name, "bundles": str(work / "bundles"), "device": "cpu",
                "scoring_model": bundle.name, "scoring_interval": "1",
                **dict(kv.split("=", 1) for kv in args.samples.split(",") if kv)}
        studies = work / "studies"
        studies.mkdir()
        images = sorted((data / "imagesTr").glob("*.nii.gz"))
        with local_server(studies, conf, work / "server.log", env=thread_env(args.threads or None)) as url:
            client = MONAILabelClient(url, tmpdir=str(work / "tmp"))
            for image in images:
                client.upload_image(str(image), image_id=image.name[:-7])
            first = images[0].name[:-7]
            client.save_label(first, str(model_values(data / "labelsTr" / images[0].name, work / "label.nii.gz")),
                              tag="final")
            Trainer(client, bundle.name, 1, {}, 600)()
            weights = bundle / "models" / "model.pt"
            t0 = os.stat(weights).st_mtime
            first_pass, _, _ = wait_scored(url, t0 - 1, args.interval, 1800)
            idle = []
            end = time.time() + args.idle
            while time.time() < end:
                idle.append(poll_info(url)[0])
                time.sleep(args.interval)
            results = []
            for v in range(args.versions):
                tmp = weights.with_name(f".model.pt.v{v}.tmp")
                shutil.copyfile(weights, tmp)
                since = time.time()
                os.replace(tmp, weights)  # a new model version, as a training run writes it
                took, lat, per_method = wait_scored(url, since, args.interval, 1800)
                results.append({"version": v + 1, "rescored_s": round(took, 2), "info_latency_s": lat,
                                "per_method_s": per_method})
        n = args.pool
        print(f"pool: {n} unlabelled images {args.shape}, methods {', '.join(METHODS)} ({args.samples}), "
              f"test-time mirroring {'off' if args.no_mirroring else 'on'}, 2 shared CPU cores, "
              f"threads {args.threads or 'default'}")
        print(f"first scoring pass after the first training: {first_pass:.1f} s")
        print(f"/info/ idle:            {stats(idle)}")
        for r in results:
            print(f"version {r['version']}: new weights -> {n} images re-scored by {len(METHODS)} methods in "
                  f"{r['rescored_s']:.1f} s ({r['rescored_s'] / n:.2f} s per image; passes "
                  + ", ".join(f"{m} {t:.1f} s" for m, t in r["per_method_s"].items())
                  + f"); /info/ while scoring: {stats(r['info_latency_s'])}")
        busy = [x for r in results for x in r["info_latency_s"]]
        ratio = statistics.median(busy) / statistics.median(idle)
        print(f"/info/ p50 while scoring / idle: {ratio:.2f}x")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"pool": n, "shape": args.shape, "mirroring": not args.no_mirroring,
                                   "conf": conf | {"bundles": "<tmp>"}, "threads": args.threads or None,
                                   "first_pass_s": round(first_pass, 2),
                                   "idle_ms": {"p50": statistics.median(idle) * 1000,
                                               "p95": percentile(idle, 0.95) * 1000},
                                   "versions": [{"version": r["version"], "rescored_s": r["rescored_s"],
                                                 "per_method_s": r["per_method_s"],
                                                 "p50_ms": statistics.median(r["info_latency_s"]) * 1000,
                                                 "p95_ms": percentile(r["info_latency_s"], 0.95) * 1000,
                                                 "max_ms": max(r["info_latency_s"]) * 1000} for r in results],
                                   "p50_ratio": ratio}, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
