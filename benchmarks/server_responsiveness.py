"""Does the server answer while models run? ``/info/`` latency with concurrent ``/infer`` loops vs none.

A live LabelZoo server (the bundle as shipped by default, or its smoke overrides with ``--small``) on
synthetic CT studies; this process sends ``GET /info/`` every ``--interval`` seconds and records the
latency, first with nothing else running (the baseline), then while ``--loops`` client threads each run
``/infer`` back to back. It prints p50 / p95 / max of both, their ratio, the inferences done and how many
were answered 429 (queue full). Inference runs in worker threads, bounded per model
(``infer_concurrency``, ``infer_queue``), so the event loop stays free for the other routes.

Example: python benchmarks/server_responsiveness.py --loops 2 --samples 60
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.app.conftest import shrink_bundle  # noqa: E402
from tests.conftest import run_server  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def info_latencies(url: str, samples: int, interval: float) -> list[float]:
    import requests

    out = []
    for _ in range(samples):
        start = time.perf_counter()
        requests.get(f"{url}/info/", timeout=120).raise_for_status()
        out.append(time.perf_counter() - start)
        time.sleep(interval)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="btcv_ct_unetr_segmentation")
    ap.add_argument("--shape", default="96,96,64")
    ap.add_argument("--loops", type=int, default=2, help="concurrent /infer client loops")
    ap.add_argument("--samples", type=int, default=60, help="/info/ requests per phase")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between /info/ requests")
    ap.add_argument("--small", action="store_true", help="the bundle's smoke overrides (a small network)")
    args = ap.parse_args()

    import requests

    from labelzoo.data import build_sample_studies

    tmp = Path(tempfile.mkdtemp(prefix="lz-resp-"))
    try:
        shape = tuple(int(s) for s in args.shape.split(","))
        studies = build_sample_studies(tmp / "studies", n_images=4, n_labeled=1, shape=shape, seed=0)
        bundles = tmp / "bundles"
        if args.small:
            shrink_bundle(REPO / "bundles" / args.bundle, bundles)
        else:
            bundles.mkdir()
            shutil.copytree(REPO / "bundles" / args.bundle, bundles / args.bundle,
                            ignore=shutil.ignore_patterns("models", "eval", "logs"))
        conf = f"models={args.bundle},bundles={bundles},skip_scoring=true,skip_trainers=true"
        with run_server(studies, tmp / "server.log", conf=conf) as server:
            url = server.url
            requests.post(f"{url}/infer/{args.bundle}", params={"image": "case_001", "output": "json"},
                          timeout=600).raise_for_status()  # warm-up: network built, weights loaded
            idle = info_latencies(url, args.samples, args.interval)

            stop = threading.Event()
            codes: list[int] = []
            durations: list[float] = []

            def loop() -> None:
                while not stop.is_set():
                    start = time.perf_counter()
                    r = requests.post(f"{url}/infer/{args.bundle}", params={"image": "case_002", "output": "json"},
                                      timeout=600)
                    codes.append(r.status_code)
                    if r.status_code == 200:
                        durations.append(time.perf_counter() - start)
                    else:
                        time.sleep(0.2)

            threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.loops)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            busy = info_latencies(url, args.samples, args.interval)
            stop.set()
            for t in threads:
                t.join(timeout=600)

        print(f"bundle {args.bundle} ({'smoke overrides' if args.small else 'as shipped'}), image {shape}, "
              f"{args.loops} concurrent /infer loops, {args.samples} /info/ requests per phase")
        print(f"{'phase':<28}{'p50 (ms)':>10}{'p95 (ms)':>10}{'max (ms)':>10}")
        for name, values in (("/info/, nothing running", idle), (f"/info/, {args.loops} /infer loops", busy)):
            print(f"{name:<28}{1000 * statistics.median(values):>10.1f}{1000 * percentile(values, 0.95):>10.1f}"
                  f"{1000 * max(values):>10.1f}")
        print(f"ratio busy/idle: p50 {statistics.median(busy) / statistics.median(idle):.2f}x, "
              f"p95 {percentile(busy, 0.95) / percentile(idle, 0.95):.2f}x")
        ok = codes.count(200)
        print(f"/infer answered: {ok} x 200 (median {statistics.median(durations):.2f} s), "
              f"{codes.count(429)} x 429 (queue full), other: {len(codes) - ok - codes.count(429)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
