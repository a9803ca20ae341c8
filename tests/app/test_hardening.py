"""The server as an attacker and a careless client see it: no code execution, no data loss, bounded memory.

Every test talks to a live server (uvicorn on 127.0.0.1) over plain HTTP or ``MONAILabelClient``. The module's
server serves two shrunk bundles (the CT UNETR and the 4-channel BraTS network) on the synthetic CT studies,
with small limits so oversize uploads are cheap to send.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
import torch

from tests.app.conftest import BUNDLE_NAME, REPO_ROOT, shrink_bundle
from tests.conftest import find_free_port, run_server

pytestmark = pytest.mark.server

BRATS = "brats_mri_axialattention_segmentation"
MAX_UPLOAD_MB = 8


@pytest.fixture(scope="module")
def two_bundles(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hardening-bundles")
    for name in (BUNDLE_NAME, BRATS):
        shrink_bundle(REPO_ROOT / "bundles" / name, root)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_studies_template, two_bundles):
    base = tmp_path_factory.mktemp("hardening")
    studies = base / "studies"
    shutil.copytree(sample_studies_template, studies)
    # a crash during a write leaves temp files: the server removes them at start
    (studies / "labels" / "final" / ".case_000.nii.gz.abc123.tmp").write_bytes(b"half")
    (studies / ".datastore_v2.json.xyz.tmp").write_text("{")
    conf = (f"models={BUNDLE_NAME}+{BRATS},bundles={two_bundles},skip_scoring=true,allow_model_upload=true,"
            f"max_upload_mb={MAX_UPLOAD_MB},max_image_voxels=2000000,infer_concurrency=1,infer_queue=0")
    with run_server(studies, base / "server.log", conf=conf) as live:
        yield live


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def store_state(studies: Path) -> dict[str, str]:
    """Every stored file (and datastore_v2.json) with its checksum."""
    return {str(p.relative_to(studies)): digest(p) for p in sorted(studies.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def put_label(url: str, image: str, file: Path, tag: str = "final", params: str | None = None) -> requests.Response:
    with open(file, "rb") as f:
        return requests.put(f"{url}/datastore/label", params={"image": image, "tag": tag},
                            data={"params": params} if params is not None else None,
                            files={"label": (file.name, f)}, timeout=60)


def put_image(url: str, file: Path, image: str | None = None, params: str | None = None,
              filename: str | None = None) -> requests.Response:
    with open(file, "rb") as f:
        return requests.put(f"{url}/datastore/image", params={"image": image} if image else None,
                            data={"params": params} if params is not None else None,
                            files={"file": (filename or file.name, f)}, timeout=60)


def header_only_nifti(path: Path, shape, dtype=np.int16) -> Path:
    """A gzipped NIfTI header declaring ``shape`` with (almost) no voxel data: tens of bytes on disk."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    return path


def label_like(server, image: str, path: Path, affine_scale=None) -> Path:
    ref = nib.load(server.studies / f"{image}.nii.gz")
    affine = ref.affine.copy()
    if affine_scale is not None:
        affine[:3, :3] = affine[:3, :3] * np.asarray(affine_scale)[None, :]
    label = np.zeros(ref.shape, np.uint8)
    label[20:30, 20:30, 10:20] = 1
    nib.save(nib.Nifti1Image(label, affine), path)
    return path


# ---- 1. no code from a request -----------------------------------------------------------------------------
EXPRESSIONS = [
    "$__import__('pathlib').Path('{marker}').write_text('pwned')",
    "@network_def",
    "%configs/train.json#network_def",
]


def test_config_expressions_are_refused_before_any_task_starts(server, tmp_path):
    marker = tmp_path / "pwned.txt"
    url = server.url
    for template in EXPRESSIONS:
        value = template.format(marker=marker)
        for field in ("tracking_run_name", "tracking_experiment_name", "tracking_uri"):
            r = requests.post(f"{url}/train/{BUNDLE_NAME}", json={"tracking": "mlflow", field: value}, timeout=60)
            assert r.status_code == 422 and field in r.json()["detail"], (field, r.text)
        r = requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002"},
                          data={"params": json.dumps({"client_id": value})}, timeout=60)
        assert r.status_code == 422 and "client_id" in r.json()["detail"], r.text
        r = requests.post(f"{url}/activelearning/first", json={"client_id": value}, timeout=60)
        assert r.status_code == 422, r.text
        r = requests.post(f"{url}/batch/infer/{BUNDLE_NAME}", json={"label_tag": value}, timeout=60)
        assert r.status_code == 422, r.text
        r = requests.put(f"{url}/datastore/image/info", params={"image": "case_002"},
                         data={"info": json.dumps({"note": value})}, timeout=60)
        assert r.status_code == 422, r.text
    # an object that MONAI would instantiate
    target = {"_target_": "os.system", "command": f"touch {marker}"}
    r = requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002"},
                      data={"params": json.dumps({"label_info": [target]})}, timeout=60)
    assert r.status_code == 422 and "_target_" in r.json()["detail"], r.text
    r = requests.post(f"{url}/scoring/epistemic", json={"x": target}, timeout=60)
    assert r.status_code in (404, 422), r.text
    assert not marker.exists()
    assert requests.get(f"{url}/train/", timeout=30).status_code in (200, 404)
    assert "pwned" not in server.log_text()


@pytest.mark.parametrize("options, name", [
    ({"max_epochs": "abc"}, "max_epochs"),
    ({"max_epochs": 0}, "max_epochs"),
    ({"val_split": 1.5}, "val_split"),
    ({"val_split": "nan"}, "val_split"),
    ({"device": "tpu"}, "device"),
    ({"pretrained": "maybe"}, "pretrained"),
    ({"gpus": "0;rm -rf /"}, "gpus"),
    ({"model_filename": "../../etc/passwd"}, "model_filename"),
    ({"run_id": "network_def"}, "run_id"),
    ({"epochs": 3}, "epochs"),
])
def test_bad_training_options_get_422_naming_the_option(server, options, name):
    r = requests.post(f"{server.url}/train/{BUNDLE_NAME}", json=options, timeout=60)
    assert r.status_code == 422, r.text
    assert repr(name) in r.json()["detail"], r.text


# ---- 2. a failed save loses nothing ------------------------------------------------------------------------
def test_failed_label_save_leaves_every_stored_file_as_it_was(server, tmp_path):
    url, studies = server.url, server.studies
    good = label_like(server, "case_001", tmp_path / "good.nii.gz")
    before = store_state(studies)
    for params in ("[1]", "not json", '{"ts": 5}', '{"name": "../x"}', '"text"'):
        for image in ("case_001", "case_003"):  # labelled, unlabelled
            r = put_label(url, image, good, params=params)
            assert r.status_code == 422, (params, r.text)
    assert store_state(studies) == before
    assert not (studies / "labels" / "final" / "case_003.nii.gz").exists()  # no orphan to become a label
    assert "final" not in server.client().datastore()["objects"]["case_003"]["labels"]


# ---- 3. memory is bounded before it is spent ---------------------------------------------------------------
def test_huge_declared_images_are_refused_from_their_header(server, tmp_path):
    url = server.url
    bomb = header_only_nifti(tmp_path / "bomb.nii.gz", (1024, 1024, 1024))
    assert bomb.stat().st_size < 100
    for response in (put_image(url, bomb, "bomb"),
                     requests.post(f"{url}/infer/{BUNDLE_NAME}", files={"file": ("bomb.nii.gz", bomb.read_bytes())},
                                   timeout=60),
                     put_label(url, "case_002", bomb)):
        assert response.status_code == 413, response.text
        assert "max_image_voxels" in response.json()["detail"] and "1,073,741,824" in response.json()["detail"]
    assert "bomb" not in server.client().datastore()["objects"]


def test_uploads_over_the_byte_cap_get_413_while_streaming(server, tmp_path):
    big = tmp_path / "big.nii.gz"
    big.write_bytes(os.urandom((MAX_UPLOAD_MB + 1) * 2**20))
    r = put_image(server.url, big, "big")
    assert r.status_code == 413 and "max_upload_mb" in r.json()["detail"], r.text

    def chunks():  # no Content-Length: the body is counted as it arrives
        boundary = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.nii.gz\"\r\n\r\n"
        yield boundary
        for _ in range(MAX_UPLOAD_MB + 2):
            yield os.urandom(2**20)
        yield b"\r\n--xyz--\r\n"

    r = requests.put(f"{server.url}/datastore/image", params={"image": "big2"}, data=chunks(),
                     headers={"Content-Type": "multipart/form-data; boundary=xyz"}, timeout=60)
    assert r.status_code == 413, r.text
    assert server.client().info()["datastore"]["total"] == 6


# ---- 4. malformed input is 4xx, never 5xx ------------------------------------------------------------------
def test_malformed_input_never_gets_a_5xx(server, tmp_path):
    url = server.url
    image = server.studies / "case_002.nii.gz"
    good_label = label_like(server, "case_002", tmp_path / "l.nii.gz")
    long_suffix = "scan" + ".x" * 200
    cases = {
        "list params on infer": requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002"},
                                              data={"params": "[1]"}, timeout=60),
        "non-JSON params on infer": requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002"},
                                                  data={"params": "{oops"}, timeout=60),
        "non-string image in params": requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002"},
                                                    data={"params": json.dumps({"image": 5})}, timeout=60),
        "nothing to infer on": requests.post(f"{url}/infer/{BUNDLE_NAME}", timeout=60),
        "unknown session": requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"session_id": "nosuch"}, timeout=60),
        "bad output": requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002", "output": "x"},
                                    timeout=60),
        "list params on image upload": put_image(url, image, "copy", params="[1]"),
        "non-JSON params on image upload": put_image(url, image, "copy", params="{"),
        "400-character suffix": put_image(url, image, "copy", filename=long_suffix),
        "list params on label": put_label(url, "case_002", good_label, params="[1]"),
        "list info": requests.put(f"{url}/datastore/image/info", params={"image": "case_002"},
                                  data={"info": "[1]"}, timeout=60),
        "non-JSON info": requests.put(f"{url}/datastore/image/info", params={"image": "case_002"},
                                      data={"info": "{"}, timeout=60),
        "label info for a traversal id": requests.put(f"{url}/datastore/label/info",
                                                      params={"label": "../x", "tag": "final"}, timeout=60),
        "strategy with a list k": requests.post(f"{url}/activelearning/first", json={"k": {"n": 1}},
                                                timeout=60),
        "strategy with a non-object body": requests.post(f"{url}/activelearning/first", json=[1], timeout=60),
        "train with a non-object body": requests.post(f"{url}/train/{BUNDLE_NAME}", json=[1], timeout=60),
        "train all with an unknown model": requests.post(f"{url}/train/", json={"nosuch": {}}, timeout=60),
    }
    for name, response in cases.items():
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        detail = response.json()["detail"]
        assert detail, name
    assert "params" in cases["list params on infer"].json()["detail"]
    assert "'image'" in cases["non-string image in params"].json()["detail"]
    assert cases["400-character suffix"].status_code == 415


# ---- 5. labels on another grid -----------------------------------------------------------------------------
def test_label_with_other_spacing_is_refused(server, tmp_path):
    before = store_state(server.studies)
    wrong = label_like(server, "case_001", tmp_path / "wrong.nii.gz", affine_scale=(1.0, 1.0, 2.5))
    r = put_label(server.url, "case_001", wrong)
    assert r.status_code == 422 and "spacing" in r.json()["detail"], r.text
    shifted = nib.load(label_like(server, "case_001", tmp_path / "shift.nii.gz"))
    affine = shifted.affine.copy()
    affine[:3, 3] += 7.5
    nib.save(nib.Nifti1Image(np.asarray(shifted.dataobj), affine), tmp_path / "shift.nii.gz")
    r = put_label(server.url, "case_001", tmp_path / "shift.nii.gz")
    assert r.status_code == 422 and "origin" in r.json()["detail"], r.text
    assert store_state(server.studies) == before


# ---- 6. only datastore ids ---------------------------------------------------------------------------------
def test_infer_reads_no_file_outside_the_datastore(server, tmp_path):
    outside = Path(tempfile.gettempdir()) / f"labelzoo-outside-{os.getpid()}.nii.gz"
    shutil.copyfile(server.studies / "case_002.nii.gz", outside)
    try:
        r = requests.post(f"{server.url}/infer/{BUNDLE_NAME}", params={"image": str(outside)}, timeout=60)
        assert r.status_code == 400 and "not a valid id" in r.json()["detail"], r.text
        r = requests.post(f"{server.url}/infer/{BUNDLE_NAME}", params={"image": "case_002"},
                          data={"params": json.dumps({"image": str(outside)})}, timeout=60)
        assert r.status_code == 422, r.text
    finally:
        outside.unlink(missing_ok=True)


# ---- 7. training refused when no labelled image fits the model ---------------------------------------------
def test_training_a_model_without_fitting_data_is_refused(server):
    r = requests.post(f"{server.url}/train/{BRATS}", json={"max_epochs": 1}, timeout=60)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"no labelled image fits model {BRATS!r} (needs 4 channels, 3D)")


# ---- 8. leftovers ------------------------------------------------------------------------------------------
def _upload_dirs() -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob("labelzoo-uploads-*"))


def _temp_zips() -> set[str]:
    out = set()
    for p in Path(tempfile.gettempdir()).iterdir():
        try:
            if p.is_file() and p.stat().st_size > 0 and p.read_bytes()[:2] == b"PK":
                out.add(p.name)
        except OSError:
            continue
    return out


def test_no_leftovers_after_rejected_uploads_exports_or_a_crash(server, tmp_path):
    studies = server.studies
    assert not list(studies.rglob(".*.tmp")), "stale temp files were not removed at start"
    pid_dirs = [d for d in _upload_dirs() if d.name.split("-")[2] == str(server.process.pid)]
    assert len(pid_dirs) == 1
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image")
    for _ in range(3):
        assert put_image(server.url, junk, "junk").status_code == 422
        assert put_label(server.url, "case_002", junk).status_code == 422
    assert not list(pid_dirs[0].iterdir())
    zips = _temp_zips()
    for _ in range(2):
        r = requests.get(f"{server.url}/datastore/dataset", timeout=120)
        assert r.status_code == 200 and r.content[:2] == b"PK"
    time.sleep(0.5)
    assert _temp_zips() <= zips


# ---- 9. unknown scoring method with scoring off ------------------------------------------------------------
def test_unknown_scoring_method_is_404_with_scoring_off(server):
    for path in ("/scoring/nosuch", "/scoring/epistemic"):
        r = requests.post(f"{server.url}{path}", params={"run_sync": True}, timeout=60)
        assert r.status_code == 404 and "scoring is off" in r.json()["detail"], r.text
    assert "monailabel.interfaces.utils.app -m scoring" not in server.log_text()


# ---- 10. the options /info/ advertises train an untrained bundle -------------------------------------------
def _train_done(client):
    task = client.train_status()
    if task["status"] in ("DONE", "ERROR", "STOPPED") and task.get("progress", {}).get("status") in (
            "finished", "failed", "stopped"):
        return task
    return None


def test_training_with_the_options_info_advertises(server):
    client = server.client()
    options = client.info()["trainers"][BUNDLE_NAME]["config"]
    assert options["model_filename"] == ["model.pt"]
    # as the Slicer plugin sends them back: a list collapses to its first item
    params = {k: (v[0] if isinstance(v, list) and v else v) for k, v in options.items()}
    params.update(max_epochs=1, val_split=0.5)
    client.train_start(BUNDLE_NAME, params)
    deadline = time.monotonic() + 300
    while (task := _train_done(client)) is None:
        assert time.monotonic() < deadline, "training did not end"
        time.sleep(1)
    assert task["status"] == "DONE", (task.get("progress"), server.log_text()[-3000:])
    assert client.info()["models"][BUNDLE_NAME]["trained"] is True


# ---- weights upload ----------------------------------------------------------------------------------------
def test_weights_upload_is_checked_against_the_network(server, tmp_path):
    url = server.url
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"not.a.layer": torch.zeros(3)}}, bad)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    for file in (bad, text):
        with open(file, "rb") as f:
            r = requests.put(f"{url}/model/{BUNDLE_NAME}", files={"file": (file.name, f)}, timeout=60)
        assert r.status_code == 422, r.text
    r = requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002", "output": "json"}, timeout=120)
    assert r.status_code == 200, r.text
    # a real state dict of the served network is accepted
    sys.path.insert(0, str(REPO_ROOT / "apps" / "labelzoo"))
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(server_bundle(server) / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def", instantiate=True)
    good = tmp_path / "good.pt"
    torch.save(network.state_dict(), good)
    with open(good, "rb") as f:
        r = requests.put(f"{url}/model/{BUNDLE_NAME}", files={"file": ("good.pt", f)}, timeout=60)
    assert r.status_code == 200, r.text
    r = requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002", "output": "json"}, timeout=120)
    assert r.status_code == 200, r.text


def server_bundle(server) -> Path:
    conf = server.process.args[server.process.args.index("--conf") + 1]
    folder = [kv.split("=", 1)[1] for kv in conf.split(",") if kv.startswith("bundles=")][0]
    return Path(folder) / BUNDLE_NAME


# ---- responsiveness: inference off the event loop, bounded per model ---------------------------------------
def test_inference_queue_is_bounded_and_info_answers_meanwhile(server):
    url = server.url
    results: list[int] = []
    barrier = threading.Barrier(4)

    def infer():
        barrier.wait()
        r = requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_003", "output": "json"}, timeout=300)
        results.append(r.status_code)

    threads = [threading.Thread(target=infer) for _ in range(4)]
    for t in threads:
        t.start()
    info_codes = []
    while any(t.is_alive() for t in threads):
        info_codes.append(requests.get(f"{url}/info/", timeout=30).status_code)
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert set(results) <= {200, 429} and 200 in results and 429 in results, results
    assert info_codes and set(info_codes) == {200}


# ---- concurrency and kill -9: no acknowledged save is lost -------------------------------------------------
def test_concurrent_clients_keep_every_save(server, tmp_path):
    ids = [f"case_00{i}" for i in range(6)]
    errors: list[BaseException] = []
    saved: dict[tuple[int, int], str] = {}
    lock = threading.Lock()
    template = label_like(server, "case_000", tmp_path / "template.nii.gz")
    base = nib.load(template)

    def client_loop(n: int) -> None:
        try:
            for k in range(12):
                image = ids[(n + k) % len(ids)]
                tag = f"c{n}"
                data = np.asarray(base.dataobj).copy()
                data[0, 0, 0] = 0
                data[1, 1, 1] = 1 if k % 2 else 0
                path = tmp_path / f"l_{n}_{k}.nii.gz"
                nib.save(nib.Nifti1Image(data, base.affine), path)
                r = put_label(server.url, image, path, tag=tag)
                assert r.status_code == 200, r.text
                with lock:
                    saved[(n, k)] = (image, tag, digest(path))
        except BaseException as e:  # re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[:3]
    assert len(saved) == 96
    store = server.client().datastore()["objects"]
    last: dict[tuple[str, str], str] = {}
    for (n, k) in sorted(saved):
        image, tag, h = saved[(n, k)]
        last[(image, tag)] = h
    for (image, tag), h in last.items():
        assert tag in store[image]["labels"], (image, tag)
        assert digest(server.studies / "labels" / tag / f"{image}.nii.gz") == h
    json.loads((server.studies / "datastore_v2.json").read_text())
    assert not list(server.studies.rglob(".*.tmp"))


@pytest.mark.parametrize("kills", [2, pytest.param(6, marks=pytest.mark.slow)])
def test_kill_9_during_saves_loses_no_acknowledged_label(tmp_path, sample_studies_template, two_bundles, kills):
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    conf = f"models={BUNDLE_NAME},bundles={two_bundles},skip_scoring=true,skip_trainers=true"
    ref = nib.load(studies / "case_000.nii.gz")
    acknowledged: dict[str, str] = {}
    in_flight: dict[str, set[str]] = {}  # saves sent after the last acknowledged one: may or may not have landed
    for round_ in range(kills):
        with run_server(studies, tmp_path / f"server{round_}.log", conf=conf) as live:
            stop = threading.Event()

            def saver(n: int, live=live, round_=round_, stop=stop) -> None:
                k = 0
                while not stop.is_set():
                    image = f"case_00{(n + k) % 6}"
                    value = round_ * 10_000 + n * 1000 + k + 1
                    data = np.zeros(ref.shape, np.uint16)
                    data[0, 0, 0] = value % 13 + 1
                    data[2, 2, 2] = 1
                    path = tmp_path / f"k{round_}_{n}_{k}.nii.gz"
                    nib.save(nib.Nifti1Image(data, ref.affine), path)
                    key, h = f"{image}/k{n}", digest(path)
                    in_flight.setdefault(key, set()).add(h)
                    try:
                        r = put_label(live.url, image, path, tag=f"k{n}")
                    except requests.RequestException:
                        return
                    if r.status_code == 200:
                        acknowledged[key] = h
                        in_flight[key] = set()
                    k += 1

            threads = [threading.Thread(target=saver, args=(n,)) for n in range(3)]
            for t in threads:
                t.start()
            time.sleep(3.0)
            os.kill(live.process.pid, signal.SIGKILL)
            stop.set()
            for t in threads:
                t.join(timeout=60)
    # a fresh server on the same folder lists every acknowledged label with its content
    assert acknowledged
    with run_server(studies, tmp_path / "final.log", conf=conf) as live:
        objects = live.client().datastore()["objects"]
        for key, h in acknowledged.items():
            image, tag = key.split("/")
            assert tag in objects[image]["labels"], key
            assert digest(studies / "labels" / tag / f"{image}.nii.gz") in {h, *in_flight.get(key, ())}, key
        assert not list(studies.rglob(".*.tmp"))


# ---- shutdown and access -----------------------------------------------------------------------------------
def test_sigterm_stops_within_10s_with_a_pending_sync_scoring(tmp_path, sample_studies_template, two_bundles):
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    conf = (f"models={BUNDLE_NAME},bundles={two_bundles},skip_trainers=true,epistemic_samples=100,tta_samples=7,"
            "scoring_interval=3600")
    with run_server(studies, tmp_path / "server.log", conf=conf) as live:
        result: list = []

        def pending():
            try:
                result.append(requests.post(f"{live.url}/scoring/epistemic", params={"run_sync": True}, timeout=120))
            except requests.RequestException as e:
                result.append(e)

        thread = threading.Thread(target=pending)
        thread.start()
        time.sleep(2.0)
        r = requests.put(f"{live.url}/model/{BUNDLE_NAME}", files={"file": ("x.pt", b"x")}, timeout=30)
        assert r.status_code == 403 and "allow_model_upload" in r.json()["detail"]
        start = time.monotonic()
        live.process.send_signal(signal.SIGTERM)
        live.process.wait(timeout=30)
        elapsed = time.monotonic() - start
        thread.join(timeout=30)
    assert elapsed < 10.0, f"server took {elapsed:.1f} s to stop"
    assert not list(studies.rglob(".*.tmp"))
    json.loads((studies / "datastore_v2.json").read_text())


def test_auth_protects_labelzoo_routes(tmp_path, sample_studies_template, two_bundles):
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    conf = f"models={BUNDLE_NAME},bundles={two_bundles},skip_scoring=true,skip_trainers=true"
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": "http://127.0.0.1:9/realms/labelzoo"}
    with run_server(studies, tmp_path / "server.log", conf=conf, extra_env=env, ready_status=(200, 401)) as live:
        url = live.url
        calls = {
            "infer": requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "case_002"}, timeout=30),
            "train": requests.post(f"{url}/train/{BUNDLE_NAME}", json={}, timeout=30),
            "next sample": requests.post(f"{url}/activelearning/first", json={}, timeout=30),
            "label": requests.put(f"{url}/datastore/label", params={"image": "case_002"},
                                  files={"label": ("l.nii.gz", b"x")}, timeout=30),
            "dataset": requests.get(f"{url}/datastore/dataset", timeout=30),
            "logs": requests.get(f"{url}/logs/", timeout=30),
            "weights": requests.put(f"{url}/model/{BUNDLE_NAME}", files={"file": ("x.pt", b"x")}, timeout=30),
            "scoring": requests.post(f"{url}/scoring/epistemic", timeout=30),
            "limits": requests.get(f"{url}/labelzoo/limits", timeout=30),
        }
        for name, response in calls.items():
            assert response.status_code == 401, (name, response.status_code, response.text)


def test_serving_beyond_loopback_without_auth_is_refused(tmp_path, sample_studies_template):
    port = find_free_port()
    cmd = [sys.executable, "-m", "labelzoo.cli", "serve", "--studies", str(sample_studies_template),
           "--host", "0.0.0.0", "--port", str(port), "--dry_run"]
    env = {k: v for k, v in os.environ.items() if k != "MONAI_LABEL_AUTH_ENABLE"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out
    assert "without authentication" in out.stderr and "--insecure" in out.stderr
    out = subprocess.run([*cmd, "--insecure"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(cmd, capture_output=True, text=True, env={**env, "MONAI_LABEL_AUTH_ENABLE": "true"},
                         timeout=120)
    assert out.returncode == 0, out.stderr


# ---- a write that fails half-way (disk full) restores what was stored ------------------------------------------------
def test_datastore_write_failing_half_way_restores_the_previous_state(tmp_path, sample_studies_template, monkeypatch):
    app_dir = str(REPO_ROOT / "apps" / "labelzoo")
    sys.path.insert(0, app_dir)
    try:
        from lib.datastore import LabelZooDatastore
    finally:
        sys.path.remove(app_dir)
    studies = tmp_path / "studies"
    shutil.copytree(sample_studies_template, studies)
    store = LabelZooDatastore(str(studies), extensions=["*.nii.gz"], auto_reload=False)
    ref = nib.load(studies / "case_000.nii.gz")
    new = tmp_path / "new.nii.gz"
    data = np.zeros(ref.shape, np.uint8)
    data[5:9, 5:9, 5:9] = 6
    nib.save(nib.Nifti1Image(data, ref.affine), new)
    before = store_state(studies)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    import lib.datastore as module

    real_replace = os.replace

    def replace_failing_for_the_index(src, dst):  # the label is in place, the index write fails
        if str(dst).endswith("datastore_v2.json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    for patch in ((LabelZooDatastore, "_stage_datastore_file", full_disk),
                  (module, "os", type("os_shim", (), {**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")},
                                                      "replace": staticmethod(replace_failing_for_the_index)}))):
        with monkeypatch.context() as m:
            m.setattr(*patch)
            for image in ("case_001", "case_004"):  # replacing a label, adding a first one
                with pytest.raises(OSError, match="No space"):
                    store.save_label(image, str(new), "final", {})
            with pytest.raises(OSError, match="No space"):
                store.add_image("case_new", str(studies / "case_000.nii.gz"), {})
        assert store_state(studies) == before, patch[1]
        assert "case_004" in store.get_unlabeled_images() and "case_new" not in store.list_images()


def test_options_info_advertises_are_accepted_back(server):
    """Clients (the stock MONAI Label Slicer plugin) send each task's advertised config back as its options."""
    info = server.client().info()

    def collapse(config):
        return {k: (v[0] if isinstance(v, list) and v else v) for k, v in (config or {}).items()}

    params = collapse(info["models"][BUNDLE_NAME].get("config"))
    r = requests.post(f"{server.url}/infer/{BUNDLE_NAME}", params={"image": "case_002", "output": "json"},
                      data={"params": json.dumps(params)}, timeout=300)
    assert r.status_code == 200, (params, r.text)
    for name, strategy in info["strategies"].items():
        r = requests.post(f"{server.url}/activelearning/{name}", json=collapse(strategy.get("config")), timeout=60)
        assert r.status_code == 200, (name, r.text)
