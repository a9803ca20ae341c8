"""The LabelZoo app in a real MONAI Label server, driven by the client the Slicer plugin uses."""

import pytest

pytestmark = pytest.mark.server


def test_info_names_the_app(live_server):
    info = live_server.client().info()
    assert info["name"] == "LabelZoo"
    assert {"random", "first"} <= set(info["strategies"])
    assert info["datastore"]["total"] == 6 and info["datastore"]["completed"] == 2


def test_next_sample_first_returns_an_unlabelled_image(live_server):
    sample = live_server.client().next_sample("first", {})
    assert sample["id"].startswith("case_")
    labelled = {"case_000", "case_001"}
    assert sample["id"] not in labelled


def test_server_started_offline(live_server):
    log = live_server.log_text()
    assert "Uvicorn running on http://127.0.0.1" in log
    for word in ("sam2", "Downloading", "hosting_storage"):
        assert word not in log, f"{word!r} in the server log: the app must start without downloads"


def test_every_repository_bundle_is_served_trained_or_not(live_server):
    from labelzoo.paths import bundles_dir

    bundles = sorted(p.name for p in bundles_dir().iterdir() if (p / "configs" / "metadata.json").is_file())
    assert bundles, "no bundles in bundles/"
    info = live_server.client().info()
    for name in bundles:
        assert name in info["models"] and name in info["trainers"], name
        trained = (bundles_dir() / name / "models" / "model.pt").is_file()
        assert info["models"][name]["trained"] is trained
    assert {"epistemic", "tta", "hybrid"} <= set(info["strategies"])
