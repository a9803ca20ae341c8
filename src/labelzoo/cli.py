"""The ``labelzoo`` command line: ``fire`` over the plain functions of the package, nothing else.

Run ``labelzoo --help`` for the list of commands and ``labelzoo COMMAND --help`` for one of them.
"""

from __future__ import annotations

import logging
import sys

import fire

from labelzoo import __version__
from labelzoo.data import build_cxr_studies, build_sample_studies
from labelzoo.errors import LabelZooError
from labelzoo.serve import serve


def version() -> str:
    """Print the LabelZoo version. Example: labelzoo version
    """
    return __version__


def sample_data(out: str, n_images: int = 8, n_labeled: int = 3, shape: str = "96,96,64",
                spacing: str = "1.5,1.5,2.0", seed: int = 0, layout: str = "monailabel",
                overwrite: bool = False) -> str:
    """Build the synthetic CT demo studies (no download) in OUT.

    Labels use BTCV numbering (spleen 1, left kidney 3, liver 6). With --layout monailabel (default)
    OUT is a MONAI Label local datastore (images, labels/final); with --layout msd it is a Medical
    Segmentation Decathlon dataset (imagesTr, labelsTr, imagesTs, dataset.json).
    Example: labelzoo sample-data data/sample --n_images 8 --n_labeled 3

    Args:
        out: destination folder; must be empty unless --overwrite.
        n_images: number of cases.
        n_labeled: cases with a label (the rest are for annotation).
        shape: volume size in voxels, X,Y,Z.
        spacing: voxel size in mm, X,Y,Z.
        seed: base random seed (the same seed gives the same data).
        layout: monailabel or msd.
        overwrite: write into a non-empty folder.
    """
    path = build_sample_studies(out, n_images=n_images, n_labeled=n_labeled, shape=shape, spacing=spacing,
                                seed=seed, layout=layout, overwrite=overwrite)
    return f"wrote {n_images} cases ({n_labeled} labelled) to {path}"


def sample_data_cxr(out: str, n_images: int = 8, n_labeled: int = 6, shape: str = "288,256", seed: int = 0,
                    layout: str = "msd", overwrite: bool = False) -> str:
    """Build synthetic frontal chest radiographs with lung masks (no download) in OUT.

    With --layout msd (default) OUT holds PNG images and 0/1 masks in imagesTr, labelsTr, imagesTs and a
    dataset.json, the input of bundles/lung_xray_unetplusplus_segmentation (--dataset_dir OUT); with --layout
    monailabel OUT is a MONAI Label datastore of 2D NIfTI images (labels in labels/final).
    Example: labelzoo sample-data-cxr data/cxr --n_images 40 --n_labeled 32

    Args:
        out: destination folder; must be empty unless --overwrite.
        n_images: number of radiographs.
        n_labeled: radiographs with a lung mask (the training set with --layout msd).
        shape: image size in pixels, ROWS,COLUMNS.
        seed: base random seed (the same seed gives the same data).
        layout: msd or monailabel.
        overwrite: write into a non-empty folder.
    """
    path = build_cxr_studies(out, n_images=n_images, n_labeled=n_labeled, shape=shape, seed=seed, layout=layout,
                             overwrite=overwrite)
    return f"wrote {n_images} chest radiographs ({n_labeled} with lung masks) to {path}"


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
    "sample-data-cxr": sample_data_cxr,
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
