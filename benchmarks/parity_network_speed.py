"""One training step of the planned bundle's network vs nnU-Net v2's, alternated in one process (same load).

``benchmarks/nnunet_parity.py`` times whole trainings one after the other; on a shared machine the load changes
between them. This script times only the network part of an iteration (forward, deep-supervision Dice + CE
loss, backward, SGD step; no data loading) of both sides **in the same process, alternately**, on the same
random batch: the planned bundle's ``network`` / ``loss`` / ``optimizer`` from its ``configs/train.json``
(``monai.bundle.ConfigParser``), and nnU-Net's ``nnUNetTrainer.train_step`` after ``initialize()`` (its
``PlainConvUNet``, ``DeepSupervisionWrapper(DC_and_CE_loss)`` on targets downsampled per scale, gradient clipping).

It needs nnunetv2 *and* LabelZoo: run it with the parity interpreter and LabelZoo's sources on the path, on the
work folder ``nnunet_parity.py --work DIR`` left behind:
``PYTHONPATH=src .venv-parity/bin/python benchmarks/parity_network_speed.py --work DIR [--steps 4]``.
``--compare-bundle`` adds a third side, another bundle of the same configuration (e.g. the
``DIR/labelzoo_compare/...`` bundle that ``nnunet_parity.py --compare-src`` planned with an earlier tree), for a
before/after of a change of the network or loss in the same process; ``--threads`` sets torch's threads
(default: one per core, as ``nnUNetv2_train -device cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

DATASET_NAME = "Dataset977_ParitySynthetic"


def labelzoo_step(bundle: Path):
    """A callable doing one bundle training step on ``(x, y)``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = "$torch.device('cpu')"
    net, loss_fn, opt = (parser.get_parsed_content(k) for k in ("network", "loss", "optimizer"))
    net.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters())


def nnunet_step(work: Path, configuration: str):
    """A callable doing one ``nnUNetTrainer.train_step`` on ``(x, y)`` (targets downsampled per scale)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    pre = work / "nnUNet_pre" / DATASET_NAME
    plans = load_json(str(pre / "nnUNetPlans.json"))
    plans["continue_training"] = False
    trainer = nnUNetTrainer(plans, configuration, 0, load_json(str(pre / "dataset.json")), device=torch.device("cpu"))
    trainer.initialize()
    scales = trainer._get_deep_supervision_scales()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        targets = [y if all(s == 1 for s in sc) else
                   torch.nn.functional.interpolate(y.float(), scale_factor=tuple(float(s) for s in sc),
                                                   mode="nearest").to(y.dtype) for sc in scales]
        trainer.train_step({"data": x, "target": targets})

    return step, sum(p.numel() for p in trainer.network.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="the --work folder of a nnunet_parity.py run")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per side (after one warm-up step each)")
    ap.add_argument("--compare-bundle", default=None,
                    help="another bundle of the same configuration to time as a third side (e.g. the one "
                         "nnunet_parity.py --compare-src planned)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    args = ap.parse_args()
    work = Path(args.work)
    bundle = next(p for p in (work / "labelzoo").iterdir() if (p / "configs" / "plan.json").is_file())
    plan = json.loads((bundle / "configs" / "plan.json").read_text())
    configuration = plan["configuration"]
    os.environ.setdefault("nnUNet_raw", str(work / "nnUNet_raw"))
    os.environ.setdefault("nnUNet_preprocessed", str(work / "nnUNet_pre"))
    os.environ.setdefault("nnUNet_results", str(work / "nnUNet_results_speed"))
    nn_plans = json.loads((work / "nnUNet_pre" / DATASET_NAME / "nnUNetPlans.json").read_text())
    nn_cfg = nn_plans["configurations"][configuration]
    torch.set_num_threads(args.threads)  # default: all cores, as nnUNetv2_train -device cpu
    lz, lz_params = labelzoo_step(bundle)
    cmp = labelzoo_step(Path(args.compare_bundle))[0] if args.compare_bundle else None
    nn, nn_params = nnunet_step(work, configuration)
    gen = torch.Generator().manual_seed(0)
    n_classes = len(json.loads((work / "nnUNet_raw" / DATASET_NAME / "dataset.json").read_text())["labels"])

    def batch(patch: list[int], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(size, 1, *patch, generator=gen),
                torch.randint(0, n_classes, (size, 1, *patch), generator=gen))

    lz_batch = batch(plan["patch_size"], plan["batch_size"])
    nn_batch = batch(nn_cfg["patch_size"], nn_cfg["batch_size"])
    sides = [("labelzoo", lz, lz_batch), ("nnunet", nn, nn_batch)]
    if cmp is not None:
        sides.append(("compare", cmp, lz_batch))
    for _, fn, b in sides:  # warm-up
        fn(*b)
    times: dict[str, list[float]] = {name: [] for name, _, _ in sides}
    for i in range(args.steps):  # alternate (order rotated), so every side sees the same load
        for name, fn, b in sides[i % len(sides):] + sides[:i % len(sides)]:
            t0 = time.perf_counter()
            fn(*b)
            times[name].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"{configuration}: LabelZoo DynUNet patch {plan['patch_size']} batch {plan['batch_size']} "
          f"({lz_params / 1e6:.2f} M parameters); nnU-Net PlainConvUNet patch {nn_cfg['patch_size']} batch "
          f"{nn_cfg['batch_size']} ({nn_params / 1e6:.2f} M parameters); {torch.get_num_threads()} threads")
    print(f"network step (forward + loss + backward + step), median of {args.steps}: LabelZoo {med['labelzoo']:.3f} s, "
          f"nnU-Net {med['nnunet']:.3f} s, ratio {med['labelzoo'] / med['nnunet']:.2f}x")
    if cmp is not None:
        print(f"--compare-bundle {Path(args.compare_bundle).name}: {med['compare']:.3f} s, ratio to nnU-Net "
              f"{med['compare'] / med['nnunet']:.2f}x; LabelZoo / compare {med['labelzoo'] / med['compare']:.2f}x")
    for name, ts in times.items():
        print(f"  {name} by step: {', '.join(f'{t:.3f}' for t in ts)}")


if __name__ == "__main__":
    main()
