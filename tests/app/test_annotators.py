"""Several annotators on one live server: leases, no silent overwrites, prior versions, k reads and consensus.

Two (or three) ``MONAILabelClient``s with different identities (``annotator`` in their params, as a client
without authentication sends it; with auth on the signed-in user is used instead).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client.client import MONAILabelClientException

from tests.app.conftest import BUNDLE_NAME
from tests.conftest import REPO_ROOT, run_server

pytestmark = pytest.mark.server


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def label_file(studies: Path, image: str, out: Path, box: tuple[int, int] = (10, 30), value: int = 6) -> Path:
    ref = nib.load(studies / f"{image}.nii.gz")
    data = np.zeros(ref.shape, np.uint8)
    data[box[0]:box[1], box[0]:box[1], 10:30] = value
    nib.save(nib.Nifti1Image(data, ref.affine), out)
    return out


def client(server, tmp_path: Path, name: str):
    from monailabel.client import MONAILabelClient

    folder = tmp_path / f"client-{name}"
    folder.mkdir(exist_ok=True)
    return MONAILabelClient(server.url, tmpdir=str(folder), client_id=name)


def save(server, image: str, path: Path, annotator: str, replace: bool = False) -> requests.Response:
    params = {"annotator": annotator, **({"replace": True} if replace else {})}
    with open(path, "rb") as f:
        return requests.put(f"{server.url}/datastore/label", params={"image": image, "tag": "final"},
                            data={"params": json.dumps(params)}, files={"label": (path.name, f)}, timeout=60)


@pytest.fixture
def team_server(tmp_path, sample_studies_template, small_bundles):
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    conf = f"models={BUNDLE_NAME},bundles={small_bundles},skip_scoring=true,skip_trainers=true,lease_minutes=0.05"
    with run_server(studies, tmp_path / "server.log", conf=conf) as server:
        yield server


def test_one_image_per_annotator_no_silent_overwrite_prior_versions_kept(team_server, tmp_path):
    server, studies = team_server, team_server.studies
    alice, bob = client(server, tmp_path, "alice"), client(server, tmp_path, "bob")
    # concurrent next_sample: different images
    got: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def ask(c, name):
        barrier.wait()
        got[name] = c.next_sample("first", {"annotator": name})["id"]

    threads = [threading.Thread(target=ask, args=(c, n)) for c, n in ((alice, "alice"), (bob, "bob"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["alice"] != got["bob"], got
    image = got["alice"]
    info = requests.get(f"{server.url}/labelzoo/annotations", params={"image": image}, timeout=30).json()
    assert [le["annotator"] for le in info["leases"]] == ["alice"]

    # alice infers (renews her lease) and saves; the label records who, when, how long, from which model
    alice.infer(BUNDLE_NAME, image, {"annotator": "alice"})
    mine = label_file(studies, image, tmp_path / "alice.nii.gz", (10, 30))
    assert save(server, image, mine, "alice").status_code == 200
    stored = studies / "labels" / "final" / f"{image}.nii.gz"
    assert digest(stored) == digest(mine)
    record = requests.get(f"{server.url}/labelzoo/annotations", params={"image": image}, timeout=30).json()
    final = record["labels"]["final"]
    assert final["annotator"] == "alice" and final["strategy"] == "first" and final["seconds"] >= 0
    assert final["model_version"] == "untrained"
    assert record["leases"] == []  # saved: the lease ends

    # bob's save over alice's final label is refused; hers is untouched
    his = label_file(studies, image, tmp_path / "bob.nii.gz", (12, 34))
    r = save(server, image, his, "bob")
    assert r.status_code == 409 and "'alice'" in r.json()["detail"] and "replace" in r.json()["detail"], r.text
    assert digest(stored) == digest(mine)
    with pytest.raises(MONAILabelClientException, match="409"):
        bob.save_label(image, str(his), tag="final", params={"annotator": "bob"})
    # asked to replace: done, and alice's label stays as a prior version
    r = save(server, image, his, "bob", replace=True)
    assert r.status_code == 200 and r.json()["annotator"] == "bob", r.text
    assert digest(stored) == digest(his)
    record = requests.get(f"{server.url}/labelzoo/annotations", params={"image": image}, timeout=30).json()
    assert len(record["versions"]) == 1 and record["versions"][0]["annotator"] == "alice"
    assert record["versions"][0]["replaced_by"] == "bob"
    prior = requests.get(f"{server.url}/labelzoo/version", params={"image": image, "index": 0}, timeout=30)
    assert prior.status_code == 200 and hashlib.sha256(prior.content).hexdigest() == digest(mine)
    # alice may update her own label without asking
    other = got["bob"]
    again = label_file(studies, other, tmp_path / "b2.nii.gz", (5, 20))
    assert save(server, other, again, "bob").status_code == 200
    assert save(server, other, again, "bob").status_code == 200


def test_a_lease_expires_and_the_image_is_served_again(team_server, tmp_path):
    alice, bob = client(team_server, tmp_path, "alice"), client(team_server, tmp_path, "bob")
    first = alice.next_sample("first", {"annotator": "alice"})
    assert first["lease"]["annotator"] == "alice" and first["lease"]["expires_in_s"] <= 3.0
    assert bob.next_sample("first", {"annotator": "bob"})["id"] != first["id"]
    time.sleep(3.5)  # lease_minutes=0.05: 3 s idle
    assert bob.next_sample("first", {"annotator": "bob"})["id"] == first["id"]


def test_two_reads_per_image_give_a_consensus_and_a_report(tmp_path, sample_studies_template, small_bundles):
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    conf = f"models={BUNDLE_NAME},bundles={small_bundles},skip_scoring=true,skip_trainers=true,reads_per_image=2"
    with run_server(studies, tmp_path / "server.log", conf=conf) as server:
        alice, bob = client(server, tmp_path, "alice"), client(server, tmp_path, "bob")
        image = alice.next_sample("first", {"annotator": "alice"})["id"]
        assert bob.next_sample("first", {"annotator": "bob"})["id"] == image  # the same image reaches both
        alice.infer(BUNDLE_NAME, image, {"annotator": "alice"})  # the model's suggestion is kept as 'original'
        assert save(server, image, label_file(studies, image, tmp_path / "a.nii.gz", (10, 30)), "alice").ok
        store = server.client().datastore()["objects"][image]["labels"]
        assert "read-alice" in store and "final" not in store  # one read of two: not labelled yet
        # alice does not get it again; carol does (one read missing)
        assert alice.next_sample("first", {"annotator": "alice"})["id"] != image
        r = save(server, image, label_file(studies, image, tmp_path / "b.nii.gz", (12, 30)), "bob")
        assert r.status_code == 200 and r.json()["consensus"] is True, r.text
        store = server.client().datastore()["objects"][image]["labels"]
        assert {"read-alice", "read-bob", "consensus", "final"} <= set(store)
        cons = np.asarray(nib.load(studies / "labels" / "consensus" / f"{image}.nii.gz").dataobj)
        assert (cons == 6).sum() == 18 * 18 * 20  # majority of two: where both painted
        assert server.client().info()["datastore"]["completed"] == 3
        report = requests.get(f"{server.url}/labelzoo/agreement", timeout=30).json()
        assert report["annotators"]["alice"]["labels"] == 1 and "6" in report["classes"]
        d = report["classes"]["6"]["mean_pairwise_dice"]
        assert 0.8 < d < 1.0 and report["classes"]["6"]["mean_dice_vs_model"] is not None
        plot = requests.get(f"{server.url}/labelzoo/agreement/plot", timeout=60)
        assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
    out = subprocess.run([sys.executable, "-m", "labelzoo.cli", "agreement", str(studies), "--threshold", "0.95",
                          "--plot", str(tmp_path / "agreement.png")], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "alice" in out.stdout and image in out.stdout and (tmp_path / "agreement.png").is_file()


def test_kill_9_during_replacing_saves_keeps_every_acknowledged_label_and_version(tmp_path, sample_studies_template,
                                                                                   small_bundles):
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    conf = f"models={BUNDLE_NAME},bundles={small_bundles},skip_scoring=true,skip_trainers=true"
    acknowledged: list[str] = []
    sent: list[str] = []
    with run_server(studies, tmp_path / "server.log", conf=conf) as server:
        stop = threading.Event()

        def saver() -> None:
            k = 0
            while not stop.is_set():
                who = "alice" if k % 2 else "bob"
                path = label_file(studies, "case_003", tmp_path / f"s{k}.nii.gz", (5 + k % 20, 40), value=6)
                sent.append(digest(path))
                try:
                    r = save(server, "case_003", path, who, replace=True)
                except requests.RequestException:
                    return
                if r.status_code == 200:
                    acknowledged.append(sent[-1])
                k += 1

        thread = threading.Thread(target=saver)
        thread.start()
        time.sleep(3.0)
        os.kill(server.process.pid, signal.SIGKILL)
        stop.set()
        thread.join(timeout=60)
    assert len(acknowledged) >= 2
    with run_server(studies, tmp_path / "after.log", conf=conf) as server:
        record = requests.get(f"{server.url}/labelzoo/annotations", params={"image": "case_003"}, timeout=30).json()
        current = digest(studies / "labels" / "final" / "case_003.nii.gz")
        kept = {digest(studies / v["file"]) for v in record["versions"]} | {current}
        # every acknowledged label is the current one or a prior version
        assert set(acknowledged) <= kept
        assert current in {acknowledged[-1], *sent[len(acknowledged):]}
        assert not list(studies.rglob(".*.tmp"))
