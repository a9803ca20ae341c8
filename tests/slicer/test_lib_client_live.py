"""LabelZooLib against a live LabelZoo server (real MONAI Label process, real HTTP, a real shrunk bundle).

One server for the module: the client's routes and calls first, then the annotator's whole loop
(connect -> next sample -> infer -> merge -> submit -> train -> status) as the Slicer module runs it.
"""

import json
import time
import urllib.request

import nibabel as nib
import numpy as np
import pytest
from LabelZooLib import (
    LabelTable,
    LabelZooClient,
    ServerError,
    Session,
    merge_labelmap,
    remap_labelmap,
    sample_choice,
)
from LabelZooLib.client import AUTH_ROUTES, ROUTES

from tests.app.conftest import BUNDLE_NAME
from tests.slicer.conftest import tiny_unetr_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, sample_studies_template):
    """The LabelZoo app serving the shrunk (tiny UNETR, 1 epoch) bundle, untrained, with scoring kept light."""
    conf = "epistemic_samples=2,tta_samples=2,scoring_interval=600"
    with tiny_unetr_server(tmp_path_factory, sample_studies_template, "slicer-live", conf) as server:
        yield server


def openapi_routes(url: str) -> set[tuple[str, str]]:
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=30) as answer:
        spec = json.load(answer)
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_every_route_the_client_calls_is_in_the_servers_openapi(live_server):
    served = openapi_routes(live_server.url)
    missing = {name: route for name, route in ROUTES.items() if name not in AUTH_ROUTES and route not in served}
    assert not missing, f"client routes absent from {live_server.url}/openapi.json: {missing}"
    # /auth/* is only mounted when the server runs with authentication: check MONAI Label's own router
    from monailabel.endpoints.login import router

    auth = {(m, r.path) for r in router.routes for m in r.methods}
    assert {ROUTES[name] for name in AUTH_ROUTES} <= auth


def test_connect_reads_app_strategies_and_progress(live_server):
    client = LabelZooClient(live_server.url)
    assert client.auth_enabled() is False
    session = Session()
    session.connect(client.server_url, client.info())
    assert session.info["name"] == "LabelZoo"
    assert {"first", "random"} <= set(session.strategies)
    labelled, total = session.progress()
    assert total >= 6 and labelled >= 2
    assert client.datastore()["total"] == total


def test_next_sample_download_submit_download(live_server, tmp_path):
    client = LabelZooClient(live_server.url, client_id="pytest")
    before = client.datastore()
    sample = client.next_sample("first")
    image_id = sample["id"]
    image_path = client.download_image(image_id, tmp_path)
    assert image_path.read_bytes() == (live_server.studies / f"{image_id}.nii.gz").read_bytes()
    image = nib.load(image_path)

    table = LabelTable.from_server({"spleen": 1, "liver": 6})
    labelmap = np.zeros(image.shape, np.uint8)
    labelmap[5:15, 5:15, 5:15] = 6
    label_path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(labelmap, image.affine), label_path)
    # a draft under its own tag: stored, but not a final label (so the training set stays small)
    stored = client.save_label(image_id, label_path, tag="draft", params={"label_info": table.to_label_info()})
    assert stored["image"] == image_id
    after = client.datastore()
    assert after["label_tags"]["draft"] == 1 and after["completed"] == before["completed"]

    back = client.download_label(stored["label"], tmp_path / "back", tag="draft")
    assert np.array_equal(np.asarray(nib.load(back).dataobj), labelmap)
    entry = client.datastore("all")["objects"][image_id]["labels"]["draft"]
    assert entry["info"]["label_info"][1]["name"] == "liver", "label names and values are stored with the label"


def test_upload_a_local_volume(live_server, tmp_path):
    client = LabelZooClient(live_server.url)
    source = live_server.studies / "case_000.nii.gz"
    image_id = client.upload_image(source, image_id="uploaded_case")
    assert image_id == "uploaded_case"
    assert "uploaded_case" in client.datastore("all")["objects"]


def test_server_errors_carry_status_and_message(live_server, tmp_path):
    client = LabelZooClient(live_server.url)
    with pytest.raises(ServerError) as e:
        client.download_image("no_such_image", tmp_path)
    assert e.value.status == 404 and e.value.message == "Image NOT Found"
    assert "GET" in str(e.value) and "no_such_image" in str(e.value)
    with pytest.raises(ServerError) as e:
        client.infer("no_such_model", "case_000")
    assert e.value.status >= 400


def test_training_status_before_any_training(live_server):
    client = LabelZooClient(live_server.url)
    assert client.train_running() is False
    status = client.train_status()
    assert status is None or status["status"] in {"DONE", "ERROR", "STOPPED"}


def wait_training(client: LabelZooClient, session: Session, timeout: float = 300.0):
    """Poll ``GET /train/`` like the module's timer until the task ends; returns the final status."""
    deadline = time.monotonic() + timeout
    seen_running = False
    while True:
        status = session.training_update(client.train_status())
        seen_running |= status.running
        if status.state in ("DONE", "ERROR", "STOPPED") and not client.train_running():
            return status, seen_running
        assert time.monotonic() < deadline, f"training did not end within {timeout}s: {status.describe()}"
        time.sleep(1.0)


def test_annotation_loop_end_to_end(live_server, tmp_path):
    """connect -> next sample -> infer -> merge -> submit -> train -> status, as the Slicer module does it."""
    client = LabelZooClient(live_server.url, client_id="slicer-e2e")
    session = Session()

    # connect: app, models (trained or not), strategies, progress
    session.connect(client.server_url, client.info())
    session.select_model(BUNDLE_NAME)
    assert session.model_status(BUNDLE_NAME).startswith("untrained")
    assert {"epistemic", "tta", "hybrid", "random", "first"} <= set(session.strategies)
    labelled, total = session.progress()

    # next sample, with the strategy's reason (and score, once the pool is scored)
    session.select_strategy("epistemic")
    choice = sample_choice(client.next_sample(session.strategy), session.strategy)
    assert choice.reason and choice.describe().startswith(f"{choice.image_id} chosen by 'epistemic'")
    image_path = client.download_image(choice.image_id, tmp_path)
    image = nib.load(image_path)
    session.open_image(choice.image_id, choice)

    # infer: the model's label map comes back over multipart and is mapped to the session's labels by name
    image_id, model = session.begin_infer()
    result = client.infer(model, image_id, dest_dir=tmp_path / "infer")
    assert result.label_path is not None and result.params["label_names"]["liver"] == 6
    predicted = np.asarray(nib.load(result.label_path).dataobj)
    assert predicted.shape == image.shape
    mapping = session.segmentation_received(session.info["models"][model]["labels"])
    assert session.dirty and mapping[6] == session.labels.value_of("liver")

    # merge: the annotator already outlined the spleen; the suggestion only fills unlabelled voxels
    spleen = session.labels.value_of("spleen")
    drawn = np.zeros(image.shape, np.uint8)
    drawn[20:30, 20:30, 10:20] = spleen
    incoming = remap_labelmap(predicted, mapping)
    merged = merge_labelmap(drawn, incoming, mode="fill")
    assert (merged[drawn == spleen] == spleen).all()
    assert np.array_equal(merged[drawn == 0], incoming[drawn == 0])
    assert session.labels_outside(model) == []

    # submit: the label map with names, values and colours; progress moves
    image_id, params = session.begin_submit()
    label_path = tmp_path / "submit.nii.gz"
    nib.save(nib.Nifti1Image(merged, image.affine), label_path)
    stored = client.save_label(image_id, label_path, params=params)
    session.submitted(client.info())
    assert not session.dirty and session.progress() == (labelled + 1, total)
    info = client.datastore("all")["objects"][image_id]["labels"]["final"]["info"]
    assert {item["name"]: item["idx"] for item in info["label_info"]}["liver"] == 6
    assert np.array_equal(np.asarray(nib.load(client.download_label(stored["label"], tmp_path / "back")).dataobj),
                          merged)

    # train: one epoch, followed through GET /train/ like the module's timer; no second run meanwhile
    trainer = session.begin_train()
    assert trainer == BUNDLE_NAME
    client.train_start(trainer, {"max_epochs": 1, "val_split": 0.34, "pretrained": False, "multi_gpu": False})
    session.training_update(client.train_status())
    assert not session.allowed("train") or session.training.state in ("DONE", "ERROR")
    status, _ = wait_training(client, session)
    assert status.state == "DONE", status.describe() + "\n" + status.last_line
    assert (status.epoch, status.total_epochs, status.percent) == (1, 1, 100)
    assert status.best_metric is not None and status.model == BUNDLE_NAME

    # status: the model is now trained, with its best metric, and segments with its new weights
    session.connect(client.server_url, client.info())
    assert session.model_status(BUNDLE_NAME).startswith("trained, best metric")
    assert session.training.describe().startswith(f"DONE ({BUNDLE_NAME}): epoch 1/1")
    assert {ROUTES[r] for r in ("info", "next_sample", "download_image", "infer", "save_label", "datastore",
                                "download_label", "train_start", "train_status")} <= set(client.calls)
