"""Where the fingerprint of an abdominal-CT-sized case spends its time: connected components per class.

Builds one synthetic 512 x 512 x ``--slices`` CT case with ``--organs`` small organs (one is split in two
pieces), writes it as an nnU-Net raw dataset in a temporary folder, and prints:

- per-class connected components the old way (``scipy.ndimage.label`` over the whole volume, once per
  class) and the new way (:func:`labelzoo.planning.fingerprint.connected_components_per_class`, inside each
  class's bounding box), with their ratio; both must give the same counts;
- the whole :func:`labelzoo.planning.fingerprint.extract_fingerprint` time of the case, and the share the
  old and new component counting would take of it.

Run: ``python benchmarks/fingerprint_speed.py [--slices 100] [--organs 8] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import generate_binary_structure
from scipy.ndimage import label as cc_label

from labelzoo.io import save_nifti, write_json_atomic
from labelzoo.planning.fingerprint import connected_components_per_class, extract_fingerprint


def _case(slices: int, organs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(-800, 50, (512, 512, slices)).astype(np.float32)
    image[96:416, 96:416] = rng.normal(40, 30, (320, 320, slices))
    label = np.zeros(image.shape, np.uint8)
    for c in range(1, organs + 1):
        x, y = rng.integers(120, 360, 2)
        z = int(rng.integers(5, max(6, slices - 35)))
        label[x:x + 40, y:y + 40, z:z + 30] = c
    label[100:110, 100:110, :5] = 1  # a second piece of class 1
    image[label > 0] += 100
    return image, label


def _old_components(label: np.ndarray, classes: list[int]) -> dict[str, int]:
    structure = generate_binary_structure(label.ndim, label.ndim)
    return {str(c): int(cc_label(label == c, structure=structure)[1]) for c in classes}


def _best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--organs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    image, label = _case(args.slices, args.organs)
    seg = label.astype(np.int64)
    classes = sorted(int(v) for v in np.unique(seg) if v)
    t_old, old = _best(lambda: _old_components(seg, classes), args.repeats)
    t_new, new = _best(lambda: connected_components_per_class(seg, classes), args.repeats)
    assert old == new, (old, new)
    print(f"case 512x512x{args.slices}, {len(classes)} classes; components {new}")
    print(f"connected components, whole volume per class (before): {t_old:7.3f} s")
    print(f"connected components, class bounding boxes (after):    {t_new:7.3f} s   ({t_old / t_new:.1f}x faster)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Dataset900_CT"
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        save_nifti(image, affine, root / "imagesTr" / "ct_000_0000.nii.gz")
        save_nifti(label, affine, root / "labelsTr" / "ct_000.nii.gz")
        write_json_atomic(root / "dataset.json", {"channel_names": {"0": "CT"},
                                                  "labels": {"background": 0, **{f"o{c}": c for c in classes}},
                                                  "numTraining": 1, "file_ending": ".nii.gz"})
        t_fp, _ = _best(lambda: extract_fingerprint(root), 1)
    before = t_fp - t_new + t_old
    print(f"fingerprint of the case: before {before:7.3f} s (components {t_old / before:.0%}), "
          f"after {t_fp:7.3f} s (components {t_new / t_fp:.0%}); {before / t_fp:.2f}x faster")


if __name__ == "__main__":
    main()
