"""How axial attention scales with the number of voxels, against full self-attention over all voxels.

Prints, for cubic feature maps of growing side, the forward time and the attention-score elements (the
memory that dominates attention) of ``labelzoo.networks.AxialAttention`` and of one full multi-head
self-attention over all voxels, as ratios to the smallest size. Axial attention over ``N = s^3`` voxels
builds ``3 * N * s`` scores (linear in N for a fixed side ratio, ``N^(4/3)`` for cubes); full attention
``N^2``. Full attention is skipped where its scores would exceed ``--max-full-scores``.

Run: ``python benchmarks/axial_attention.py [--sides 8 12 16 24 32] [--channels 32] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from labelzoo.networks import AxialAttention


def _time(fn, x: torch.Tensor, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after a warm-up call (the minimum is the least noisy on a busy machine)."""
    times = []
    with torch.no_grad():
        fn(x)
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[8, 12, 16, 24, 32])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-full-scores", type=float, default=2e8)
    args = parser.parse_args()
    torch.manual_seed(0)
    axial = AxialAttention(3, args.channels, num_heads=args.heads, head_dim=args.head_dim).eval()
    qkv = torch.nn.Linear(args.channels, 3 * args.heads * args.head_dim)

    def full(x: torch.Tensor) -> torch.Tensor:
        seq = x.flatten(2).transpose(1, 2)  # (B, N, C)
        q, k, v = qkv(seq).chunk(3, dim=-1)
        q, k, v = (t.reshape(1, -1, args.heads, args.head_dim).transpose(1, 2) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v)

    rows = []
    for side in args.sides:
        x = torch.rand(1, args.channels, side, side, side)
        n = side**3
        axial_scores = args.heads * 3 * n * side
        full_scores = args.heads * n * n
        t_axial = _time(axial, x, args.repeats)
        t_full = _time(full, x, args.repeats) if full_scores <= args.max_full_scores else float("nan")
        rows.append((side, n, t_axial, axial_scores, t_full, full_scores))
    base = rows[0]
    print(f"{'side':>5} {'voxels':>8} {'x voxels':>9} | {'axial s':>9} {'x time':>7} {'x scores':>9} | "
          f"{'full s':>9} {'x time':>7} {'x scores':>9}")
    for side, n, ta, sa, tf, sf in rows:
        print(f"{side:>5} {n:>8} {n / base[1]:>9.1f} | {ta:>9.4f} {ta / base[2]:>7.1f} {sa / base[3]:>9.1f} | "
              f"{tf:>9.4f} {tf / base[4]:>7.1f} {sf / base[5]:>9.1f}")


if __name__ == "__main__":
    main()
