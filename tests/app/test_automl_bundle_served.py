"""A bundle emitted by the T-AutoML search is served by the LabelZoo app from an extra folder.

The bundle is written by :func:`labelzoo.automl.bundle.emit_bundle` (what ``labelzoo search`` ends with) with
the weights of a freshly built network, and served with ``--conf models=<name>,bundles=<folder>``; the
client gets a label map of the image's shape with the labels named by the bundle's ``channel_def``.
"""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
from monailabel.client import MONAILabelClient

from tests.conftest import run_server

pytestmark = [pytest.mark.server, pytest.mark.slow]

VECTOR = [0, 2, 1, -1, -1, 1, 1, 0, 0, -1, 2, 0, 2, 1, 0] + [1, 0, 0, 1, 1, 1, 1, 1, 2, 3]


def test_searched_bundle_is_served(tmp_path, sample_studies_template):
    from labelzoo.automl.bundle import emit_bundle
    from labelzoo.automl.train import build_network, read_msd_dataset
    from labelzoo.data import build_sample_studies

    ds = build_sample_studies(tmp_path / "ds", n_images=3, n_labeled=3, shape=(32, 32, 32), layout="msd")
    info = read_msd_dataset(ds)
    name = "synthetic_ct_tautoml_segmentation"
    net = build_network(VECTOR, info, base_channels=8)
    emit_bundle(tmp_path / "found" / name, VECTOR, info, [32, 32, 32], 8, state_dict=net.state_dict(), dice=0.1)
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    with run_server(studies, tmp_path / "server.log", conf=f"models={name},bundles={tmp_path / 'found'}") as server:
        download = tmp_path / "client"
        download.mkdir()
        client = MONAILabelClient(server.url, tmpdir=str(download))
        assert name in client.info()["models"]
        label_file, params = client.infer(name, "case_003", {})
        label = np.asarray(nib.load(label_file).dataobj)
        assert label.shape == (64, 64, 48)
        assert set(np.unique(label).tolist()) <= {0, 1, 2, 3}
        assert params["label_names"] == {"spleen": 1, "left kidney": 2, "liver": 3}  # from channel_def
