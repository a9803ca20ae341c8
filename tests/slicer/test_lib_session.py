"""LabelZooLib.session and .settings: the session state machine, training status, scores, settings, options."""

import pytest
from LabelZooLib import LabelZooLibError, SessionError
from LabelZooLib.session import ACTIONS, Session, State, sample_choice, training_status
from LabelZooLib.settings import Option, Settings, model_options, option_values, push_history

INFO = {
    "name": "LabelZoo",
    "labels": ["spleen", "kidney_left", "liver"],
    "models": {
        "unetr": {"labels": {"background": 0, "spleen": 1, "liver": 6}, "config": {"device": ["cpu", "cuda"]},
                  "trained": True},
        "segresnet": {"labels": {"spleen": 1}, "config": {}},
        "swin": {"labels": {"spleen": 1}, "trained": False},
    },
    "trainers": {"unetr": {}, "dynunet": {}},
    "strategies": {"random": {}, "epistemic": {}},
    "train_stats": {"unetr": {"epoch": 3, "total_epochs": 10, "best_metric": 0.81,
                              "eval": {"best_metric": 0.81, "best_metric_epoch": 2}}},
    "datastore": {"total": 6, "completed": 2},
}


def connected() -> Session:
    session = Session()
    session.connect("http://127.0.0.1:8000", INFO)
    return session


def test_disconnected_session_allows_only_connect():
    session = Session()
    assert [a for a in ACTIONS if session.allowed(a)] == ["connect"]
    with pytest.raises(SessionError, match="connect to a server first"):
        session.begin_infer()
    with pytest.raises(SessionError, match="connect to a server first"):
        session.open_image("case_000")


def test_connect_reads_info_and_picks_defaults():
    session = connected()
    assert session.state is State.CONNECTED
    assert session.models == ["segresnet", "swin", "unetr"] and session.model == "segresnet"
    assert session.strategy == "epistemic"
    assert session.progress() == (2, 6)
    # values come from the models (MONAI Label's info["labels"] is only a list of names)
    assert session.labels.to_names() == {"spleen": 1, "liver": 6, "kidney_left": 7}
    session.select_model("unetr")
    with pytest.raises(SessionError, match=r"offers \['dynunet', 'segresnet', 'swin', 'unetr'\]"):
        session.select_model("nnunet")
    assert session.model_status("unetr") == "trained, best metric 0.8100"
    assert session.model_status("segresnet") == "trained"  # plain MONAI Label: listed means trained
    assert session.model_status("swin") == "untrained: random weights until it is trained"
    assert session.model_status("dynunet") == "untrained: train it first"
    session.open_image("case_000")
    session.select_model("swin")
    assert session.begin_infer() == ("case_000", "swin")
    session.select_model("dynunet")
    with pytest.raises(SessionError, match="cannot run it until it is trained"):
        session.begin_infer()
    with pytest.raises(SessionError, match="strategy 'first'"):
        session.select_strategy("first")


def test_full_cycle_and_dirty_flag_guards():
    session = connected()
    session.select_model("unetr")
    assert not session.allowed("infer") and not session.allowed("submit")
    session.open_image("case_003", sample_choice({"id": "case_003", "score": 0.5}, "epistemic"))
    assert session.state is State.IMAGE and not session.dirty
    image, model = session.begin_infer()
    assert (image, model) == ("case_003", "unetr")
    mapping = session.segmentation_received(INFO["models"]["unetr"]["labels"])
    assert mapping == {1: 1, 6: 6}, "model values are mapped to the session's by name"
    assert session.dirty and session.state is State.EDITED
    # unsaved edits: no next sample, no other image, no disconnect, no switching servers
    assert not session.allowed("next_sample") and not session.allowed("disconnect")
    with pytest.raises(SessionError, match="unsaved edits"):
        session.open_image("case_004")
    with pytest.raises(SessionError, match="unsaved edits"):
        session.connect("http://other:8000", INFO)
    image, params = session.begin_submit()
    assert image == "case_003"
    assert params["label_names"] == {"spleen": 1, "liver": 6, "kidney_left": 7}
    assert [x["name"] for x in params["label_info"]] == ["spleen", "liver", "kidney_left"]
    session.submitted({**INFO, "datastore": {"total": 6, "completed": 3}})
    assert not session.dirty and session.progress() == (3, 6) and session.submitted_count == 1
    session.open_image("case_004")
    assert session.image_id == "case_004" and not session.has_label


def test_labels_the_model_does_not_predict_are_named():
    session = connected()
    session.labels.add("lesion")
    # unetr predicts spleen 1 and liver 6 only
    assert session.labels_outside("unetr") == ["kidney_left", "lesion"]
    assert session.labels_outside("dynunet") == []  # labels unknown: nothing to compare


def test_app_label_table_prefers_model_values():
    from LabelZooLib.session import app_label_table

    assert app_label_table({"labels": {"a": 2}}).to_names() == {"a": 2}
    info = {"labels": ["spleen", "liver", "x"], "models": {"m": {"labels": {"spleen": 1, "liver": 6}},
                                                           "n": {"labels": {"liver": 2, "kidney": 6}}}}
    assert app_label_table(info).to_names() == {"spleen": 1, "liver": 6, "kidney": 7, "x": 8}
    assert app_label_table({"labels": ["a", "b"]}).to_names() == {"a": 1, "b": 2}


def test_discard_and_refresh():
    session = connected()
    session.open_image("case_001")
    session.edited()
    session.open_image("case_002", discard=True)
    assert session.image_id == "case_002"
    session.edited()
    session.discard()
    assert not session.dirty and session.has_label
    session.connect("http://127.0.0.1:8000", INFO)  # a refresh keeps the image
    assert session.image_id == "case_002"
    session.disconnect()
    assert session.state is State.DISCONNECTED and session.image_id is None


def test_submit_needs_a_label():
    session = connected()
    session.open_image("case_001")
    with pytest.raises(SessionError, match="segmentation is empty"):
        session.begin_submit()


def test_training_moves():
    session = connected()
    assert not session.allowed("stop_train")
    session.select_model("unetr")
    assert session.begin_train() == "unetr"
    status = session.training_update({"status": "RUNNING", "request": {"model": "unetr"},
                                      "details": ["Epoch: 4/10, Iter: 1/2 -- train_loss: 0.5"]})
    assert status.running and status.epoch == 4 and status.total_epochs == 10 and status.percent == 40
    assert status.best_metric == pytest.approx(0.81) and status.best_metric_epoch == 2
    assert status.describe() == "RUNNING (unetr): epoch 4/10, best metric 0.8100 (epoch 2)"
    with pytest.raises(SessionError, match="already running"):
        session.begin_train()
    session.begin_stop_train()
    session.training_update({"status": "STOPPED", "request": {"model": "unetr"}})
    assert not session.training.running and session.allowed("train")


def test_training_status_reads_a_progress_record():
    task = {"status": "RUNNING", "request": {"model": "m"},
            "progress": {"epoch": 2, "max_epochs": 4, "loss": 0.25, "best_metric": 0.5, "best_metric_epoch": 2}}
    status = training_status(task)
    assert (status.epoch, status.total_epochs, status.percent) == (2, 4, 50)
    assert status.describe() == "RUNNING (m): epoch 2/4, loss 0.2500, best metric 0.5000 (epoch 2)"


def test_training_status_without_anything():
    status = training_status(None)
    assert status.state == "IDLE" and status.percent is None and status.describe() == "IDLE"
    assert training_status(None, {"best_metric": -1}).best_metric is None
    assert training_status(None, {"best_metric": float("nan"), "epoch": float("nan")}).best_metric is None


def test_sample_choice_reads_scores():
    assert sample_choice({"id": "a"}, "random").describe() == "a chosen by 'random'"
    assert sample_choice({"id": "a", "score": 0.25}, "s").score == 0.25
    nested = sample_choice({"id": "a", "strategy": {"s": {"ts": 1, "score": 0.5}}}, "s")
    assert nested.score == 0.5
    scored = sample_choice({"id": "a", "epistemic_entropy": 1.5, "ts": 3}, "epistemic")
    assert (scored.score, scored.score_name) == (1.5, "epistemic_entropy")
    assert scored.describe() == "a chosen by 'epistemic' (epistemic_entropy 1.5)"
    labelzoo = sample_choice({"id": "b", "score": 0.7, "reason": "highest entropy of 4",
                              "selection": {"strategy": "entropy", "score": 0.7, "reason": "highest entropy of 4"}},
                             "entropy")
    assert labelzoo.describe() == "b chosen by 'entropy' (score 0.7): highest entropy of 4"
    fallback = sample_choice({"id": "c", "score": None, "selection": {"reason": "no scores yet"}}, "entropy")
    assert fallback.score is None and fallback.describe() == "c chosen by 'entropy': no scores yet"
    with pytest.raises(SessionError, match="already be labelled"):
        sample_choice({}, "random")


def test_settings_round_trip_and_history():
    settings = Settings()
    for url in ["http://a:1", "http://b:2/", "http://a:1"]:
        settings.remember_server(url)
    assert settings.server_history == ["http://a:1", "http://b:2"] and settings.server_url == "http://a:1"
    stored = {**settings.to_dict(), "auto_train": "true", "auto_segment": "false"}
    back = Settings.from_dict(stored)
    assert back.auto_train is True and back.auto_segment is False and back.server_history == settings.server_history
    assert len(push_history([f"http://h{i}:1" for i in range(20)], "http://new:1")) == 10
    with pytest.raises(LabelZooLibError, match="'auto_train'"):
        Settings.from_dict({"auto_train": "maybe"})
    with pytest.raises(LabelZooLibError, match="unknown settings"):
        Settings.from_dict({"colour": "red"})
    with pytest.raises(LabelZooLibError, match="merge_mode"):
        Settings.from_dict({"merge_mode": "union"})
    with pytest.raises(LabelZooLibError, match="server URL 'ftp://x'"):
        Settings.from_dict({"server_url": "ftp://x"})


def test_model_options_are_typed_from_the_server_config():
    info = {"models": {"m": {"config": {"largest_cc": False, "roi": 96, "overlap": 0.25, "device": ["cpu", "cuda"],
                                        "note": "x", "nested": {"a": 1}}}}}
    options = {o.name: o for o in model_options(info, "m")}
    assert set(options) == {"largest_cc", "roi", "overlap", "device", "note"}
    assert options["device"] == Option("device", "choice", "cpu", ("cpu", "cuda"))
    values = option_values(list(options.values()), {"largest_cc": "true", "roi": "64", "overlap": "0.5",
                                                    "device": "cuda"})
    assert values == {"largest_cc": True, "roi": 64, "overlap": 0.5, "device": "cuda"}
    with pytest.raises(LabelZooLibError, match="option 'roi': 'big' is not a valid int"):
        option_values(list(options.values()), {"roi": "big"})
    with pytest.raises(LabelZooLibError, match="not one of"):
        option_values(list(options.values()), {"device": "tpu"})
    with pytest.raises(LabelZooLibError, match="unknown options"):
        option_values(list(options.values()), {"foo": 1})
    with pytest.raises(LabelZooLibError, match="model 'x' is not on the server"):
        model_options(info, "x")
