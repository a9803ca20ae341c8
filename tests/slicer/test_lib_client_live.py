"""LabelZooLib's client against a live LabelZoo server (real MONAI Label process, real HTTP)."""

import json
import urllib.request

import nibabel as nib
import numpy as np
import pytest
from LabelZooLib import LabelTable, LabelZooClient, ServerError, Session
from LabelZooLib.client import AUTH_ROUTES, ROUTES

pytestmark = pytest.mark.server


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
    before = client.datastore()["completed"]
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
    stored = client.save_label(image_id, label_path, params={"label_info": table.to_label_info()})
    assert stored["image"] == image_id
    assert client.datastore()["completed"] == before + 1

    back = client.download_label(stored["label"], tmp_path / "back")
    assert np.array_equal(np.asarray(nib.load(back).dataobj), labelmap)
    entry = client.datastore("all")["objects"][image_id]["labels"]["final"]
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
