"""Benchmark the LabelZoo app: serving overhead and time to a scored pool, each against a baseline.

1. ``/infer`` latency of a live server vs running the same bundle's inference in-process (its own
   ``inference.json`` preprocessing, network, inferer and postprocessing) on the same volume: the ratio
   is what the server adds (HTTP, datastore, result file, MONAI Label's restore step).
2. Time from ``next_sample`` to a fully scored pool of N images (``epistemic`` + ``tta``) with the
   in-process scoring worker, vs MONAI Label's way of running a scoring request: a subprocess that
   re-imports and re-initialises the app (``python -m monailabel.interfaces.utils.app -m scoring``)
   on the same pool.

Every process (this one, the server, the scoring subprocesses) runs with ``--threads`` torch/OpenMP
threads (default 1): on a loaded 2-core machine OpenMP teams of 2 on a process's main thread were
measured up to 30x slower than 1 thread, which would swamp what is being compared.

By default the bundle runs with its smoke overrides (``configs/smoke.json``: a small UNETR, 32^3
ROI) so the benchmark takes a couple of minutes on CPU; ``--full`` uses the bundle as shipped.

Example: python benchmarks/app_benchmark.py --n_images 6 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.app.conftest import shrink_bundle  # noqa: E402
from tests.conftest import run_server  # noqa: E402


class InProcess:
    """The bundle's own inference pipeline (inference.json), built once in this process."""

    def __init__(self, bundle: Path):
        from monai.bundle import ConfigParser
        from monai.transforms import Compose, SaveImaged

        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        parser["bundle_root"] = str(bundle)
        parser["device"] = "$torch.device('cpu')"
        self.pre = parser.get_parsed_content("preprocessing")
        self.network = parser.get_parsed_content("network_def").eval()
        self.inferer = parser.get_parsed_content("inferer")
        post = parser.get_parsed_content("postprocessing").transforms
        self.post = Compose([t for t in post if not isinstance(t, SaveImaged)])

    def __call__(self, image: str) -> float:
        import torch

        start = time.perf_counter()
        data = self.pre({"image": image})
        with torch.no_grad():
            data["pred"] = self.inferer(data["image"][None], self.network)[0]
        self.post(data)
        return time.perf_counter() - start


def server_infer(client, model: str, image_id: str) -> float:
    start = time.perf_counter()
    client.infer(model, image_id, {})
    return time.perf_counter() - start


def wait_scored(url: str, methods=("epistemic", "tta"), timeout: float = 3600) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scoring = requests.get(f"{url}/info/", timeout=60).json()["scoring"]
        if all(scoring[m]["status"].get("pending") == 0 and scoring[m]["status"]["state"] == "idle" for m in methods):
            return
        time.sleep(0.2)
    raise TimeoutError("pool not scored in time")


def subprocess_scoring(studies: Path, conf: dict, methods=("epistemic", "tta")) -> float:
    """MONAI Label's scoring path: one app subprocess per method request, as AsyncTask runs them."""
    env = {**os.environ, "MONAI_LABEL_APP_CONF": json.dumps(conf), "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false"}
    start = time.perf_counter()
    for m in methods:
        subprocess.run([sys.executable, "-m", "monailabel.interfaces.utils.app", "-a", str(REPO / "apps" / "labelzoo"),
                        "-s", str(studies), "-m", "scoring", "-r", json.dumps({"method": m})],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="btcv_ct_unetr_segmentation")
    ap.add_argument("--n_images", type=int, default=6)
    ap.add_argument("--shape", default="64,64,48")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="the bundle as shipped, not its smoke overrides")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads in every process")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)

    from labelzoo.data import build_sample_studies

    tmp = Path(tempfile.mkdtemp(prefix="lz-bench-"))
    try:
        src = REPO / "bundles" / args.bundle
        bundles = tmp / "bundles"
        if args.full:
            bundles.mkdir()
            shutil.copytree(src, bundles / args.bundle, ignore=shutil.ignore_patterns("eval", "logs"))
        else:
            shrink_bundle(src, bundles)
        bundle = bundles / args.bundle
        studies = build_sample_studies(tmp / "studies", n_images=args.n_images, n_labeled=0, shape=args.shape, seed=0)
        pristine = tmp / "studies-pristine"
        shutil.copytree(studies, pristine)
        conf = {"models": args.bundle, "bundles": str(bundles), "scoring_interval": "0.2"}
        conf_arg = ",".join(f"{k}={v}" for k, v in conf.items())
        image = str(sorted(studies.glob("*.nii.gz"))[0])
        image_id = Path(image).name.replace(".nii.gz", "")
        (tmp / "client").mkdir()

        from monailabel.client import MONAILabelClient

        local_infer = InProcess(bundle)
        with run_server(studies, tmp / "server.log", conf=conf_arg, timeout=600) as server:
            t0 = time.perf_counter()
            server.client().next_sample("epistemic", {})
            wait_scored(server.url)
            worker_s = time.perf_counter() - t0
            client = MONAILabelClient(server.url, tmpdir=str(tmp / "client"))
            local_infer(image), server_infer(client, args.bundle, image_id)  # warm-up
            local, remote = [], []
            for _ in range(args.repeats):  # interleaved, so both see the same machine load
                local.append(local_infer(image))
                remote.append(server_infer(client, args.bundle, image_id))
        sub_s = subprocess_scoring(pristine, conf)

        med_local, med_remote = statistics.median(local), statistics.median(remote)
        n = args.n_images
        print(f"bundle {args.bundle} ({'full' if args.full else 'smoke overrides'}), {n} images of {args.shape} "
              f"voxels, {args.threads} thread(s) per process")
        print(f"infer, in-process bundle pipeline : {med_local * 1000:8.1f} ms (median of {args.repeats})")
        print(f"infer, server /infer (client)     : {med_remote * 1000:8.1f} ms (median of {args.repeats})")
        print(f"  server / in-process ratio        : {med_remote / med_local:8.2f}")
        print(f"scored pool (epistemic + tta), in-process worker : {worker_s:7.1f} s ({worker_s / n:.2f} s/image)")
        print(f"scored pool, MONAI Label subprocess per request  : {sub_s:7.1f} s ({sub_s / n:.2f} s/image)")
        print(f"  subprocess / worker ratio                      : {sub_s / worker_s:7.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
