"""UNet vs UNet++ on synthetic chest radiographs, trained with the same budget on the same data.

Both networks, their loss (Dice 1.0 + BCE 0.8) and optimiser (RAdam + Lookahead, encoder lr / 10) come from the
``lung_xray_unetplusplus_segmentation`` bundle's configs (``train.json`` and the ``unet.json`` override, plus the
encoder-backbone overrides with ``--backbones``), so the benchmark measures what the bundle trains. The data are
``labelzoo.data.make_cxr_case`` radiographs resized to ``--image_size``; the validation images are never trained
on. Printed per network: validation IoU and Dice (foreground, after the last epoch and the best epoch),
parameters, seconds per training epoch and milliseconds per inference of one image, with ratios against UNet.

    python benchmarks/unet_vs_unetplusplus.py                      # defaults: a few minutes on 2 CPU cores
    python benchmarks/unet_vs_unetplusplus.py --image_size 256 --epochs 40 --n_train 64 --features 32,32,64,128,256,32 \
        --device cuda                                              # the recipe's size, on a GPU
    python benchmarks/unet_vs_unetplusplus.py --backbones resnet18   # also FlexibleUNet / FlexibleUNet++ on ResNet-18

It prints figures; nothing is asserted. Timings include no data loading (tensors are prepared in memory).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "lung_xray_unetplusplus_segmentation"


def make_data(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic radiographs ``(n, 1, size, size)`` in [0, 1] and their masks (0/1), resized like the bundle."""
    from labelzoo.data import make_cxr_case

    images, labels = [], []
    for i in range(n):
        image, label = make_cxr_case(seed + i)
        images.append(torch.from_numpy(image.T.astype(np.float32) / 255.0)[None])  # (1, W, H) as MONAI loads it
        labels.append(torch.from_numpy(label.T.astype(np.float32))[None])
    x = F.interpolate(torch.stack(images), size=(size, size), mode="area")
    y = (F.interpolate(torch.stack(labels), size=(size, size), mode="nearest") > 0.5).float()
    x = (x - x.amin(dim=(2, 3), keepdim=True)) / (x.amax(dim=(2, 3), keepdim=True) - x.amin(dim=(2, 3), keepdim=True))
    return x, y


def build(variant: list[str], overrides: dict) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    """Network, loss and optimiser from the bundle's train.json plus override files."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json")] + [str(BUNDLE / "configs" / v) for v in variant])
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    net = parser.get_parsed_content("network")  # network_def moved to the config's `device`
    return net, parser.get_parsed_content("loss"), parser.get_parsed_content("optimizer")


def evaluate(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    from monai.metrics import DiceMetric, MeanIoU

    net.eval()
    with torch.no_grad():
        pred = net(x).argmax(dim=1, keepdim=True).float()
    iou = MeanIoU(include_background=True)(pred.cpu(), y.cpu()).mean().item()
    dice = DiceMetric(include_background=True)(pred.cpu(), y.cpu()).mean().item()
    return iou, dice


def run_one(name: str, variant: list[str], overrides: dict, data: tuple, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    net, loss_fn, opt = build(variant, {**overrides, "device": f"$torch.device('{args.device}')"})
    x_train, y_train, x_val, y_val = (t.to(args.device) for t in data)
    params = sum(p.numel() for p in net.parameters())
    epoch_times, best_iou = [], 0.0
    g = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        net.train()
        order = torch.randperm(len(x_train), generator=g)
        start = time.perf_counter()
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        epoch_times.append(time.perf_counter() - start)
        best_iou = max(best_iou, evaluate(net, x_val, y_val)[0])
    iou, dice = evaluate(net, x_val, y_val)
    net.eval()
    one = x_val[:1]
    with torch.no_grad():
        net(one)  # warm-up
        infer = []
        for _ in range(args.infer_repeats):
            start = time.perf_counter()
            net(one)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            infer.append(time.perf_counter() - start)
    logging.info("%s: IoU %.3f (best %.3f), %.2f s/epoch", name, iou, best_iou, statistics.median(epoch_times))
    return {"name": name, "iou": iou, "best_iou": best_iou, "dice": dice, "params": params,
            "epoch_s": statistics.median(epoch_times), "infer_ms": 1000 * statistics.median(infer)}


def format_table(rows: list[dict]) -> str:
    """The results as a Markdown table, ratios against the first row (UNet)."""
    base = rows[0]
    head = ("| network | val IoU | best val IoU | val Dice | parameters | x UNet | s / epoch | x UNet "
            "| ms / image | x UNet |")
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['iou']:.3f} | {r['best_iou']:.3f} | {r['dice']:.3f} | {r['params'] / 1e6:.2f} M "
            f"| {r['params'] / base['params']:.2f} | {r['epoch_s']:.2f} | {r['epoch_s'] / base['epoch_s']:.2f} "
            f"| {r['infer_ms']:.1f} | {r['infer_ms'] / base['infer_ms']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n_train", type=int, default=16, help="training images")
    ap.add_argument("--n_val", type=int, default=8, help="validation images (other seeds)")
    ap.add_argument("--image_size", type=int, default=96, help="network input side (the recipe: 256)")
    ap.add_argument("--epochs", type=int, default=8, help="epochs for every network (the same budget)")
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--features", default="16,16,32,64,128,16",
                    help="BasicUNet / BasicUNetPlusPlus features (the bundle: 32,32,64,128,256,32)")
    ap.add_argument("--backbones", default="", help="comma list of FlexibleUNet backbones to add, e.g. resnet18")
    ap.add_argument("--infer_repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    x_train, y_train = make_data(args.n_train, args.image_size, seed=args.seed)
    x_val, y_val = make_data(args.n_val, args.image_size, seed=args.seed + 10_000)
    data = (x_train, y_train, x_val, y_val)
    features = [int(f) for f in args.features.split(",")]
    common = {"features": features, "image_size": [args.image_size] * 2}
    runs = [("UNet (BasicUNet)", ["unet.json"], common), ("UNet++ (BasicUNetPlusPlus)", [], common)]
    for backbone in [b for b in args.backbones.split(",") if b]:
        runs += [(f"UNet / {backbone}", ["encoder_unet.json"], {**common, "backbone": backbone}),
                 (f"UNet++ / {backbone}", ["encoder_unetplusplus.json"], {**common, "backbone": backbone})]
    rows = [run_one(name, variant, overrides, data, args) for name, variant, overrides in runs]
    print(f"\nUNet vs UNet++ on synthetic chest radiographs: {args.n_train} training / {args.n_val} validation "
          f"images at {args.image_size}x{args.image_size}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.device}, {torch.get_num_threads()} threads; encoders from random initialisation\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
