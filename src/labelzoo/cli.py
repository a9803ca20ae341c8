"""The ``labelzoo`` command line: ``fire`` over the plain functions of the package, nothing else.

Run ``labelzoo --help`` for the list of commands and ``labelzoo COMMAND --help`` for one of them.
"""

from __future__ import annotations

import logging
import sys

import fire

from labelzoo import __version__
from labelzoo.data import build_brats_studies, build_sample_studies
from labelzoo.errors import LabelZooError
from labelzoo.serve import serve


def version() -> str:
    """Print the LabelZoo version. Example: labelzoo version
    """
    return __version__


def sample_data(out: str, n_images: int = 8, n_labeled: int = 3, shape: str | None = None,
                spacing: str | None = None, seed: int = 0, layout: str = "monailabel",
                overwrite: bool = False, kind: str = "ct", enhancing_label: int = 4) -> str:
    """Build synthetic demo studies (no download) in OUT: abdominal CT (default) or BraTS-like brain MRI.

    --kind ct: CT labelled in BTCV numbering (spleen 1, left kidney 3, liver 6), 96x96x64 at 1.5x1.5x2 mm.
    --kind brats: 4-channel MRI (T1, T1Gd, T2, FLAIR in one 4D NIfTI) with a tumour in BraTS labels
    (1 necrosis, 2 oedema, 4 enhancing; 3 with --enhancing_label 3), 64x64x48 at 1 mm.
    With --layout monailabel (default) OUT is a MONAI Label local datastore (images, labels/final); with
    --layout msd it is a Medical Segmentation Decathlon dataset (imagesTr, labelsTr, imagesTs, dataset.json).
    Example: labelzoo sample-data data/sample --n_images 8 --n_labeled 3
    Example: labelzoo sample-data data/brats --kind brats --layout msd

    Args:
        out: destination folder; must be empty unless --overwrite.
        n_images: number of cases.
        n_labeled: cases with a label (the rest are for annotation).
        shape: volume size in voxels, X,Y,Z (default 96,96,64 for ct, 64,64,48 for brats).
        spacing: voxel size in mm, X,Y,Z (default 1.5,1.5,2.0 for ct, 1,1,1 for brats).
        seed: base random seed (the same seed gives the same data).
        layout: monailabel or msd.
        overwrite: write into a non-empty folder.
        kind: ct or brats.
        enhancing_label: brats only: label of the enhancing tumour, 4 (BraTS 2021) or 3 (BraTS 2023+).
    """
    if kind not in ("ct", "brats"):
        raise LabelZooError(f"--kind must be 'ct' or 'brats', got {kind!r}")
    sizes = {k: v for k, v in (("shape", shape), ("spacing", spacing)) if v is not None}
    if kind == "brats":
        path = build_brats_studies(out, n_images=n_images, n_labeled=n_labeled, seed=seed, layout=layout,
                                   overwrite=overwrite, enhancing_label=enhancing_label, **sizes)
    else:
        path = build_sample_studies(out, n_images=n_images, n_labeled=n_labeled, seed=seed, layout=layout,
                                    overwrite=overwrite, **sizes)
    return f"wrote {n_images} cases ({n_labeled} labelled) to {path}"


def bundle_verify(bundle_dir: str, variant: str | None = None, run: bool = True, workdir: str | None = None,
                  timeout: int = 900) -> int:
    """Check a MONAI bundle: model-zoo layout and metadata schema, MONAI workflow properties, the MONAI Label
    contract, network shapes and TorchScript export, and (unless --norun) a real 1-epoch train, evaluate and
    inference run on tiny synthetic data. Prints one line per problem (file#config_id: what is wrong) and
    exits 1 when there is any.
    Example: labelzoo bundle verify bundles/btcv_ct_unetr_segmentation --variant configs/baseline.json

    Args:
        bundle_dir: the bundle folder (holding configs/).
        variant: an override config (e.g. configs/baseline.json) merged after the bundle's configs.
        run: run train/evaluate/inference for real (--norun for the static checks only).
        workdir: keep the bundle copy, synthetic data, outputs and logs in this folder.
        timeout: seconds allowed for each `python -m monai.bundle run`.
    """
    from labelzoo.bundle.verify import format_report, verify_bundle

    problems = verify_bundle(bundle_dir, run=run, variant=variant, workdir=workdir, timeout=timeout)
    print(format_report(bundle_dir, problems), file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


COMMANDS = {
    "bundle": {"verify": bundle_verify},
    "serve": serve,
    "sample-data": sample_data,
    "version": version,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``labelzoo`` console script; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    try:
        result = fire.Fire(COMMANDS, command=argv, name="labelzoo", serialize=_serialize)
    except LabelZooError as e:
        print(f"labelzoo: error: {e}", file=sys.stderr)
        return e.exit_code
    except fire.core.FireExit as e:
        return int(e.code or 0)
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    return 0


def _serialize(value: object) -> object:
    """Print strings as they are; return codes (ints) are not printed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return value


if __name__ == "__main__":
    sys.exit(main())
