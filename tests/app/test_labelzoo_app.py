"""The LabelZoo app in a live MONAI Label server, serving a real (shrunk) bundle, driven by MONAILabelClient.

One server per module: the annotation loop (every strategy -> infer -> save label -> train 1 epoch ->
progress -> infer with the new weights), scoring, concurrency and bad input all run against it.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from tests.app.conftest import BUNDLE_NAME
from tests.conftest import run_server

pytestmark = pytest.mark.server

UNLABELLED = {"case_002", "case_003", "case_004", "case_005"}
STRATEGIES = ("first", "random", "epistemic", "tta", "hybrid")


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, sample_studies_template, small_bundles):
    base = tmp_path_factory.mktemp("app")
    studies = base / "studies"
    shutil.copytree(sample_studies_template, studies)
    conf = (f"models={BUNDLE_NAME},bundles={small_bundles},scoring_interval=0.5,"
            "epistemic_samples=3,tta_samples=3,strategy_k=2")
    with run_server(studies, base / "server.log", conf=conf) as server:
        server.bundle = small_bundles / BUNDLE_NAME
        yield server


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pool_scored(client: MONAILabelClient, methods=("epistemic", "tta")) -> bool:
    scoring = client.info()["scoring"]
    return all(scoring[m]["status"].get("pending") == 0 and scoring[m]["status"]["state"] == "idle" for m in methods)


def image_scores(url: str, image_id: str) -> dict:
    info = requests.get(f"{url}/datastore/image/info", params={"image": image_id}, timeout=30).json()
    return info.get("scores", {}).get(BUNDLE_NAME, {})


def make_client(server, tmp_path: Path) -> MONAILabelClient:
    """A client with its own download folder: with the default (the system temp folder, where the server
    writes its result files) a result could be deleted by the server's clean-up after it was downloaded."""
    folder = tmp_path / f"client-{time.monotonic_ns()}"
    folder.mkdir()
    return MONAILabelClient(server.url, tmpdir=str(folder))


def load_label(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


# ---- serving ----------------------------------------------------------------------------------------------
def test_info_lists_the_untrained_bundle_with_every_task(app_server):
    info = app_server.client().info()
    model = info["models"][BUNDLE_NAME]
    assert model["trained"] is False and "untrained" in model["description"]
    assert model["labels"]["spleen"] == 1 and model["labels"]["liver"] == 6 and model["dimension"] == 3
    assert BUNDLE_NAME in info["trainers"]
    assert set(STRATEGIES) <= set(info["strategies"])
    assert {"epistemic", "tta", "dice"} <= set(info["scoring"])
    assert info["labelzoo"]["scoring_model"] == BUNDLE_NAME
    log = app_server.log_text()
    for word in ("sam2", "Downloading", "hosting_storage"):
        assert word not in log
    # MONAI Label's REST API is intact (the routes the Slicer plugin calls), scoring now served in-process
    paths = requests.get(f"{app_server.url}/openapi.json", timeout=30).json()["paths"]
    for route in ("/info/", "/activelearning/{strategy}", "/infer/{model}", "/batch/infer/{model}", "/train/",
                  "/train/{model}", "/scoring/", "/scoring/{method}", "/datastore/image", "/datastore/label",
                  "/session/"):
        assert route in paths, route


def test_scoring_worker_scores_the_pool_in_process(app_server):
    client = app_server.client()
    wait_for(lambda: pool_scored(client), 240, "the unlabelled pool to be scored")
    for image_id in UNLABELLED:
        scores = image_scores(app_server.url, image_id)
        assert 0.0 <= scores["epistemic"]["score"] <= 1.0, scores
        assert scores["tta"]["score"] >= 0.0
        assert len(scores["features"]["value"]) > 0
        assert scores["epistemic"]["version"] == "untrained"
    # the runs are listed by GET /scoring/ like MONAI Label's subprocess runs, but no subprocess was started
    status = requests.get(f"{app_server.url}/scoring/", params={"all": True}, timeout=30).json()
    assert any(t["request"]["method"] == "epistemic" and t["status"] == "DONE" for t in status)
    assert "monailabel.interfaces.utils.app -m scoring" not in app_server.log_text()
    # asking again scores nothing: only unscored images are scored
    res = requests.post(f"{app_server.url}/scoring/epistemic", params={"run_sync": True}, timeout=120).json()
    assert res["scored"] == 0 and res["status"] == "DONE"


def test_uncertainty_strategies_rank_and_explain(app_server):
    client = app_server.client()
    wait_for(lambda: pool_scored(client), 240, "the unlabelled pool to be scored")
    for strategy in ("epistemic", "tta"):
        scores = {i: image_scores(app_server.url, i)[strategy]["score"] for i in UNLABELLED}
        top2 = sorted(scores, key=lambda i: (-scores[i], i))[:2]
        first = client.next_sample(strategy, {"k": 2})
        second = client.next_sample(strategy, {"k": 2})
        # the two most uncertain images, each once (top k, then least recently served)
        assert {first["id"], second["id"]} == set(top2), (strategy, scores, first, second)
        assert first["score"] == pytest.approx(scores[first["id"]])
        assert first["selection"]["strategy"] == strategy and "uncertainty" in first["reason"]
        # k=1 always gives the single most uncertain image
        assert client.next_sample(strategy, {"k": 1})["id"] == top2[0]
    hybrid = client.next_sample("hybrid", {})
    assert hybrid["id"] in UNLABELLED and hybrid["score"] is not None and "distance" in hybrid["reason"]
    for strategy in ("first", "random"):
        sample = client.next_sample(strategy, {})
        assert sample["id"] in UNLABELLED and sample["reason"]
    assert client.next_sample("first", {})["id"] == "case_002"


# ---- the annotation loop ----------------------------------------------------------------------------------
def test_loop_infer_save_train_progress_infer_with_new_weights(app_server, tmp_path):
    client = make_client(app_server, tmp_path)
    image_id = client.next_sample("first", {})["id"]
    label_file, params = client.infer(BUNDLE_NAME, image_id, {})
    before = load_label(label_file)
    assert before.shape == (64, 64, 48) and params["label_names"]["liver"] == 6

    # the annotator corrects the suggestion: submit the synthetic ground truth as the final label
    from labelzoo.data.synthetic import make_ct_case

    _, truth, affine = make_ct_case(seed=int(image_id.split("_")[1]), shape=(64, 64, 48))
    truth_file = tmp_path / f"{image_id}.nii.gz"
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), affine), truth_file)
    client.save_label(image_id, str(truth_file), tag="final")
    info = client.info()
    assert info["datastore"]["completed"] == 3
    # the suggestion was kept as 'original', so dice (final vs suggestion) gets computed in the background
    dice = wait_for(lambda: requests.get(f"{app_server.url}/datastore/image/info", params={"image": image_id},
                                         timeout=30).json().get("dice"), 60, "the dice score")
    assert 0.0 <= dice["score"] <= 1.0 and dice["model"] == BUNDLE_NAME

    # train one epoch from random weights (pretrained=false used to crash MONAI Label)
    client.train_start(BUNDLE_NAME, {"max_epochs": 1, "val_split": 0.34, "pretrained": False, "multi_gpu": False})
    task = wait_for(lambda: (lambda t: t if t["status"] in ("DONE", "ERROR", "STOPPED") and t.get("progress",
                    {}).get("status") in ("finished", "failed") else None)(client.train_status()), 300, "training")
    assert task["status"] == "DONE", task
    progress = task["progress"]
    assert progress["status"] == "finished" and progress["epoch"] == 1 and progress["max_epochs"] == 1, progress
    assert progress["loss"] is not None and progress["best_metric"] is not None and progress["elapsed_s"] > 0
    assert progress["metric_name"] == "val_mean_dice"
    stats = client.info()["train_stats"][BUNDLE_NAME]
    assert stats["epoch"] == 1 and stats["total_epochs"] == 1 and stats["best_metric"] == progress["best_metric"]

    # inference now uses the trained weights
    info = client.info()
    assert info["models"][BUNDLE_NAME]["trained"] is True
    after_file, _ = client.infer(BUNDLE_NAME, "case_003", {})
    first_file, _ = client.infer(BUNDLE_NAME, image_id, {})
    assert not np.array_equal(load_label(first_file), before), "prediction unchanged after training"
    assert load_label(after_file).shape == (64, 64, 48)

    # new weights: the worker rescores the (now smaller) pool with the new version
    def rescored():
        pool = UNLABELLED - {image_id}
        versions = {image_scores(app_server.url, i).get("epistemic", {}).get("version") for i in pool}
        return versions and "untrained" not in versions and None not in versions
    wait_for(rescored, 240, "rescoring with the trained weights")


# ---- load ------------------------------------------------------------------------------------------------
def test_concurrent_clients_lose_nothing(app_server, tmp_path):
    ids = ["case_004", "case_005", "case_002", "case_003"]
    errors: list[BaseException] = []

    def annotate(n: int, image_id: str) -> None:
        try:
            client = make_client(app_server, tmp_path)
            client.next_sample("random", {})
            label_file, _ = client.infer(BUNDLE_NAME, image_id, {})
            label = load_label(label_file).astype(np.uint8)
            label[0, 0, 0] = n + 1  # a mark to find this client's label later
            out = tmp_path / f"label{n}.nii.gz"
            nib.save(nib.Nifti1Image(label, nib.load(label_file).affine), out)
            client.save_label(image_id, str(out), tag="concurrent")
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=annotate, args=(n, i)) for n, i in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    store = app_server.client().datastore()
    for n, image_id in enumerate(ids):
        assert "concurrent" in store["objects"][image_id]["labels"], image_id
        saved = load_label(str(app_server.studies / "labels" / "concurrent" / f"{image_id}.nii.gz"))
        assert saved[0, 0, 0] == n + 1
    json.loads((app_server.studies / "datastore_v2.json").read_text())
    leftovers = [p.name for p in (app_server.studies / "labels").rglob("*.tmp")]
    assert not leftovers, leftovers


# ---- bad input -------------------------------------------------------------------------------------------
def _nifti(path: Path, shape, dtype=np.float32) -> Path:
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype), np.eye(4)), path)
    return path


def test_bad_input_gets_4xx_and_server_keeps_serving(app_server, tmp_path):
    url = app_server.url
    client = make_client(app_server, tmp_path)
    total = client.info()["datastore"]["total"]
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"this is not an image")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    flat = _nifti(tmp_path / "flat.nii.gz", (64, 64))
    four = _nifti(tmp_path / "four.nii.gz", (32, 32, 32, 4))
    small_label = _nifti(tmp_path / "small.nii.gz", (32, 32, 48), np.uint8)
    case_002 = nib.load(app_server.studies / "case_002.nii.gz")
    stray = np.zeros(case_002.shape, np.uint8)
    stray[:4, :4, :4] = 14  # BTCV has 13 organs: 1..13
    stray_label = tmp_path / "stray.nii.gz"
    nib.save(nib.Nifti1Image(stray, case_002.affine), stray_label)

    def put_image(file: Path, image: str | None = None) -> requests.Response:
        with open(file, "rb") as f:
            return requests.put(f"{url}/datastore/image", params={"image": image} if image else None,
                                files={"file": (file.name, f)}, timeout=60)

    def put_label(file: Path, image: str, tag: str = "final") -> requests.Response:
        with open(file, "rb") as f:
            return requests.put(f"{url}/datastore/label", params={"image": image, "tag": tag},
                                files={"label": (file.name, f)}, timeout=60)

    cases = {
        "non-image upload": (put_image(junk, "junk"), 422, "not a readable image"),
        "non-image type": (put_image(notes, "notes"), 415, "not an image type"),
        "2D upload to a 3D model": (put_image(flat, "flat"), 422, "2 dimensions"),
        "4-channel upload to a 1-channel model": (put_image(four, "four"), 422, "4 channels"),
        "traversal upload id": (put_image(flat, "../x"), 400, "not a valid id"),
        "label shape mismatch": (put_label(small_label, "case_002"), 422, "must match"),
        "label value no model predicts": (put_label(stray_label, "case_002"), 422, "label value(s) [14]"),
        "label for traversal id": (put_label(small_label, "../x"), 400, "not a valid id"),
        "label with traversal tag": (put_label(small_label, "case_002", "../../x"), 400, "label tag"),
        "label for unknown image": (put_label(small_label, "nosuch"), 404, "not in the datastore"),
        "unknown model": (requests.post(f"{url}/infer/nosuch", params={"image": "case_002"}, timeout=60), 404,
                          "unknown model 'nosuch'"),
        "traversal image id": (requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "../x"}, timeout=60),
                               400, "not a valid id"),
        "server path as image": (requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "/etc/passwd"},
                                               timeout=60), 400, "not a valid id"),
        "unknown image": (requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "nosuch"}, timeout=60), 404,
                          "not in the datastore"),
        "unknown strategy": (requests.post(f"{url}/activelearning/nosuch", json={}, timeout=60), 404,
                             "unknown strategy 'nosuch'"),
        "bad k": (requests.post(f"{url}/activelearning/epistemic", json={"k": 0}, timeout=60), 422, "'k'"),
        "train unknown model": (requests.post(f"{url}/train/nosuch", json={}, timeout=60), 404, "unknown model"),
        "unknown scoring method": (requests.post(f"{url}/scoring/nosuch", timeout=60), 404, "unknown scoring"),
    }
    with open(four, "rb") as f:
        cases["4-channel file to infer"] = (
            requests.post(f"{url}/infer/{BUNDLE_NAME}", files={"file": ("four.nii.gz", f)}, timeout=60), 422,
            "4 channels")
    for name, (response, status, words) in cases.items():
        assert response.status_code == status, (name, response.status_code, response.text)
        assert words in response.json()["detail"], (name, response.text)
    # the client the Slicer plugin uses sees the message too
    with pytest.raises(MONAILabelClientException, match="unknown model"):
        client.infer("nosuch", "case_002", {})
    # nothing was stored or lost, and the server still serves
    info = client.info()
    assert info["datastore"]["total"] == total
    assert not (app_server.studies.parent / "x.nii.gz").exists()
    assert client.next_sample("first", {})["id"] in UNLABELLED


# ---- training runs that fail or are stopped ----------------------------------------------------------------
def _train_done(client: MONAILabelClient):
    task = client.train_status()
    if task["status"] in ("DONE", "ERROR", "STOPPED") and task.get("progress", {}).get("status") in (
        "finished", "failed", "stopped"
    ):
        return task
    return None


def test_failing_training_run_is_reported(app_server, tmp_path):
    client = make_client(app_server, tmp_path)
    # val_split=-1 asks for the bundle's own validation list, read from its dataset_dir: absent here
    client.train_start(BUNDLE_NAME, {"max_epochs": 1, "val_split": -1, "multi_gpu": False})
    task = wait_for(lambda: _train_done(client), 300, "the failing run to end")
    assert task["status"] == "ERROR", task
    assert task["progress"]["status"] == "failed" and task["progress"]["error"], task["progress"]
    assert client.info()["train_stats"][BUNDLE_NAME]["status"] == "failed"


@pytest.mark.slow
def test_stopped_training_run_is_reported(app_server, tmp_path):
    client = make_client(app_server, tmp_path)
    client.train_start(BUNDLE_NAME, {"max_epochs": 200, "val_split": 0.34, "multi_gpu": False})
    wait_for(lambda: client.train_status().get("progress", {}).get("status") == "running", 300, "the run to start")
    client.train_stop()
    task = wait_for(lambda: _train_done(client), 60, "the stopped run to end")
    assert task["status"] == "STOPPED" and task["progress"]["status"] == "stopped", task
    assert task["progress"]["max_epochs"] == 200
    # the server still serves
    assert client.info()["datastore"]["total"] == 6
