"""Sliding-window inference of the UNETR BTCV bundle: in-process vs `python -m monai.bundle run`.

Prints figures only (no asserts):

- in-process time of the bundle's own ``inferer`` (sliding window over the network) on one synthetic CT
  volume already through the bundle's ``preprocessing``, and the whole
  ``python -m monai.bundle run --config_file configs/inference.json`` on the same volume (process start,
  imports, config parsing, loading, saving included), with their ratio;
- FLOPs of one window (``torch.utils.flop_counter``), the number of windows, and the achieved FLOP/s as a
  fraction of this machine's measured conv3d throughput (a plain ``conv3d`` timed in the same run).

Weights are random (the bundle ships none; timing does not depend on them).

Example:
    python benchmarks/unetr_inference.py --shape 256,256,128
    python benchmarks/unetr_inference.py --shape 128,128,64 --small   # smoke-size network, quick
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "btcv_ct_unetr_segmentation"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="256,256,128", help="volume size in voxels X,Y,Z (default 256,256,128)")
    p.add_argument("--overlap", type=float, default=None, help="sliding-window overlap (default: the bundle's)")
    p.add_argument("--small", action="store_true", help="use configs/smoke.json's small network and 32^3 ROI")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=1, help="in-process repetitions (the best is reported)")
    p.add_argument("--skip-cli", action="store_true", help="skip the `python -m monai.bundle run` timing")
    return p.parse_args()


def overrides(args: argparse.Namespace) -> dict:
    out: dict = {"device": f"$torch.device('{args.device}')", "num_workers": 0}
    if args.small:
        smoke = json.loads((BUNDLE / "configs" / "smoke.json").read_text())
        out.update(smoke.get("all", {}))
        out.update(smoke.get("inference", {}))
    if args.overlap is not None:
        out["sw_overlap"] = args.overlap
    return out


def make_dataset(root: Path, shape: tuple[int, ...]) -> Path:
    """One synthetic CT volume at the bundle's spacing (so Spacingd keeps the shape) in an MSD folder."""
    from labelzoo.data import make_ct_case
    from labelzoo.io import save_nifti, write_json_atomic

    image, _, affine = make_ct_case(0, shape=shape, spacing=(1.5, 1.5, 2.0))
    save_nifti(image, affine, root / "imagesTs" / "ct.nii.gz")
    write_json_atomic(root / "dataset.json", {"training": [], "test": ["./imagesTs/ct.nii.gz"]})
    return root


def conv3d_throughput(device: str, repeats: int = 5) -> float:
    """Measured FLOP/s of a plain 3x3x3 conv3d (32 -> 32 channels, 64^3), the machine's reference."""
    x = torch.rand(1, 32, 64, 64, 64, device=device)
    conv = torch.nn.Conv3d(32, 32, 3, padding=1).to(device).eval()
    flops = 2 * 32 * 32 * 27 * 64**3
    best = math.inf
    with torch.no_grad():
        conv(x)
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            conv(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return flops / best


def window_flops(net: torch.nn.Module, roi: tuple[int, ...], device: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 1, *roi, device=device))
    return float(counter.get_total_flops())


def num_windows(shape: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> int:
    """Windows MONAI's sliding window visits (same scan-interval rule as ``dense_patch_slices``)."""
    total = 1
    for s, r in zip(shape, roi, strict=True):
        interval = max(int(r * (1 - overlap)), 1)
        total *= 1 if s <= r else math.ceil((s - r) / interval) + 1
    return total


def main() -> None:
    args = parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    from monai.bundle import ConfigParser

    ovr = overrides(args)
    with tempfile.TemporaryDirectory(prefix="labelzoo-bench-") as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp / "data", shape)
        bundle = tmp / "bundle"
        shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("models", "eval"))
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        for k, v in ovr.items():
            parser[k] = v
        parser["bundle_root"] = str(bundle)
        parser["dataset_dir"] = str(data)
        net = parser.get_parsed_content("network").eval()
        (bundle / "models").mkdir()
        torch.save(net.state_dict(), bundle / "models" / "model.pt")
        pre = parser.get_parsed_content("preprocessing")
        inferer = parser.get_parsed_content("inferer")
        roi = tuple(parser.get_parsed_content("roi_size"))
        overlap = float(parser.get_parsed_content("sw_overlap"))

        item = pre({"image": str(data / "imagesTs" / "ct.nii.gz")})
        x = item["image"].unsqueeze(0).to(args.device)
        best = math.inf
        with torch.no_grad():
            for _ in range(max(args.repeats, 1)):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t = time.perf_counter()
                inferer(x, net)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
        flops = window_flops(net, roi, args.device)
        windows = num_windows(tuple(x.shape[2:]), roi, overlap)
        ref = conv3d_throughput(args.device)

        cli = math.nan
        if not args.skip_cli:
            out = tmp / "out"
            cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" /
                                                                                     "inference.json"),
                   "--meta_file", str(bundle / "configs" / "metadata.json"), "--bundle_root", str(bundle),
                   "--dataset_dir", str(data), "--output_dir", str(out)]
            for k, v in ovr.items():
                cmd += [f"--{k}", json.dumps(v) if not isinstance(v, str) else v]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            cli = time.perf_counter() - t
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                cli = math.nan

    n_params = sum(p.numel() for p in net.parameters())
    achieved = flops * windows / best
    print(f"device                         {args.device} ({torch.get_num_threads()} threads)")
    print(f"network                        UNETR {'smoke-size' if args.small else 'ViT-B/16'}, "
          f"{n_params / 1e6:.1f} M parameters, roi {roi}, overlap {overlap}")
    print(f"volume                         {shape} voxels (after preprocessing {tuple(x.shape[2:])})")
    print(f"windows                        {windows}")
    print(f"FLOPs per window               {flops / 1e9:.2f} GFLOP")
    print(f"in-process sliding window      {best:.2f} s  ({best / windows * 1e3:.0f} ms per window)")
    print(f"python -m monai.bundle run     {cli:.2f} s  (ratio to in-process: {cli / best:.2f}x)")
    print(f"achieved throughput            {achieved / 1e9:.1f} GFLOP/s")
    print(f"conv3d reference throughput    {ref / 1e9:.1f} GFLOP/s (3x3x3, 32->32 ch, 64^3)")
    print(f"fraction of conv3d throughput  {achieved / ref:.2f}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
