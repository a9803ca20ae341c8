"""LabelZooLib's view of several annotators, against a live server: who else labelled, asking before replacing,
opening another annotator's (prior) label read-only."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from LabelZooLib import LabelZooClient, ServerError, compare_choices, download_for_compare, image_team

from tests.app.conftest import BUNDLE_NAME, bundle_source, shrink_bundle
from tests.conftest import run_server

pytestmark = pytest.mark.server


def test_team_view_asks_before_replacing_and_opens_prior_versions(tmp_path, sample_studies_template):
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    small_bundles = tmp_path / "bundles"
    shrink_bundle(bundle_source(), small_bundles)
    conf = f"models={BUNDLE_NAME},bundles={small_bundles},skip_scoring=true,skip_trainers=true"
    with run_server(studies, tmp_path / "server.log", conf=conf) as server:
        alice = LabelZooClient(server.url, client_id="alice")
        bob = LabelZooClient(server.url, client_id="bob")
        image = alice.next_sample("first")["id"]
        team = image_team(bob.annotations(image), "bob")
        assert team.holders and team.holders[0][0] == "alice" and "being annotated by alice" in team.describe()
        ref = nib.load(studies / f"{image}.nii.gz")
        label = np.zeros(ref.shape, np.uint8)
        label[10:20, 10:20, 10:20] = 6
        path = tmp_path / "a.nii.gz"
        nib.save(nib.Nifti1Image(label, ref.affine), path)
        alice.save_label(image, path)
        team = image_team(bob.annotations(image), "bob")
        assert team.final_by == "alice" and team.others_label
        assert "already has a final label by alice" in team.replace_question()
        assert image_team(alice.annotations(image), "alice").replace_question() is None
        with pytest.raises(ServerError, match="alice"):
            bob.save_label(image, path)
        bob.save_label(image, path, params={"replace": True})
        team = image_team(alice.annotations(image), "alice")
        assert team.final_by == "bob" and team.versions == 1
        prior = alice.download_label_version(image, 0, tmp_path / "cmp")
        assert np.array_equal(np.asarray(nib.load(prior).dataobj), label)
        # what the module offers to compare with, downloaded by the same background step
        choices = compare_choices(alice.annotations(image), "alice")
        assert choices == {"final by bob": ("tag", "final"), "prior version 0 by alice": ("version", 0)}
        assert compare_choices(bob.annotations(image), "bob") == {"prior version 0 by alice": ("version", 0)}
        for kind, key in choices.values():
            got = download_for_compare(alice, image, kind, key, tmp_path / "cmp2")
            assert np.array_equal(np.asarray(nib.load(got).dataobj), label)
        assert json.dumps(alice.agreement())  # answers (no image has two reads here)
