"""The Slicer module's background jobs against a live LabelZoo server: each button's chain of client calls as one
job in a :class:`LabelZooLib.Jobs` slot, answers handed over by polling (what the module's timer does), cancel,
and a train start / status / stop cycle with at most one status poll in flight."""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import pytest
from LabelZooLib import (
    BackgroundCall,
    Jobs,
    LabelZooClient,
    Session,
    TrainingWatch,
    connect_probe,
    fetch_next_sample,
    image_team,
    submit_label,
    upload_volume,
)
from LabelZooLib.client import ROUTES

from tests.slicer.conftest import tiny_unetr_server

from .test_lib_jobs import collect

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_studies_template):
    """The LabelZoo app serving the shrunk (tiny UNETR) bundle, untrained, without scoring."""
    with tiny_unetr_server(tmp_path_factory, sample_studies_template, "slicer-jobs", "skip_scoring=true") as live:
        yield live


def one(jobs: Jobs, slot: str, call: BackgroundCall):
    """Start ``call`` in ``slot`` and return its answer once the polling loop delivered it."""
    answers = []
    jobs.start(slot, call, answers.append)
    collect(jobs)
    assert len(answers) == 1
    return answers[0]


def test_connect_next_sample_submit_upload_as_background_jobs(server, tmp_path):
    client = LabelZooClient(server.url, client_id="annotator-a")
    jobs = Jobs()
    session = Session()

    info = one(jobs, "request", BackgroundCall(connect_probe, client, what="connecting"))
    assert info is not None and info["name"] == "LabelZoo"  # no auth: no login step
    session.connect(client.server_url, info)
    labelled, total = session.progress()

    # next sample: choose + download + who labelled it, one job, one answer
    client.calls.clear()
    sample = one(jobs, "request", BackgroundCall(fetch_next_sample, client, "random", tmp_path, "annotator-a"))
    assert client.calls == [ROUTES["next_sample"], ROUTES["download_image"], ROUTES["annotations"]]
    image = nib.load(sample.image_path)
    assert sample.team.image == sample.choice.image_id and sample.team.final_by is None
    session.open_image(sample.choice.image_id, sample.choice)

    # cancel: the slot is free at once, the answer (another next sample) is dropped
    answers = []
    call = jobs.start("request", BackgroundCall(fetch_next_sample, client, "random", tmp_path / "x", "annotator-a"),
                      answers.append)
    jobs.cancel("request")
    assert not jobs.busy() and call.wait(30) and jobs.poll() == [] and answers == []

    # submit: who labelled it (the replace question is asked between the two jobs), then store + fresh info
    session.edited()
    image_id, params = session.begin_submit()
    question = image_team(one(jobs, "request", BackgroundCall(client.annotations, image_id)),
                          "annotator-a").replace_question()
    assert question is None
    label = np.zeros(image.shape, np.uint8)
    label[20:30, 20:30, 10:20] = session.labels.value_of("liver")
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(label, image.affine), path)
    fresh = one(jobs, "request", BackgroundCall(submit_label, client, image_id, path, params))
    session.submitted(fresh)
    assert session.progress() == (labelled + 1, total) and not session.dirty
    # another annotator is asked before replacing it
    other = LabelZooClient(server.url, client_id="annotator-b")
    assert "already has a final label by annotator-a" in image_team(other.annotations(image_id),
                                                                     "annotator-b").replace_question()

    # upload: the volume, then fresh info
    stored, fresh = one(jobs, "request", BackgroundCall(upload_volume, client, server.studies / "case_000.nii.gz",
                                                        "uploaded_in_background"))
    assert stored == "uploaded_in_background" and fresh["datastore"]["total"] == total + 1


def test_train_start_status_stop_cycle_with_one_poll_in_flight(server):
    client = LabelZooClient(server.url)
    jobs = Jobs()
    session = Session()
    session.connect(client.server_url, client.info())
    watch = TrainingWatch(timeout=10.0)

    model = session.begin_train()
    one(jobs, "train", BackgroundCall(client.train_start, model,
                                      {"max_epochs": 200, "val_split": 0.34, "pretrained": False, "multi_gpu": False}))
    watch.reset()

    def poll_until(done, timeout=120.0):
        """The module's loop: a poll per tick, skipped while one is in flight; stop when ``done(answer)``."""
        deadline = time.monotonic() + timeout
        while True:
            answers = []
            started = jobs.start("status", watch.job(client), answers.append, pytest.fail, if_busy="skip")
            assert started is not None
            assert jobs.start("status", watch.job(client), answers.append, pytest.fail, if_busy="skip") is None
            collect(jobs)
            (answer,) = answers
            assert watch.current(answer)
            again = watch.answered(answer)
            session.training_update(answer.task)
            if done(answer):
                return answer, again
            assert time.monotonic() < deadline, session.training.describe()
            time.sleep(0.5)

    sent = client.calls.count(ROUTES["train_status"])
    answer, again = poll_until(lambda a: a.running)
    assert again and answer.info is None and session.training.running and session.training.model == model
    assert not session.allowed("train") and session.allowed("stop_train")

    # a poll in flight while Stop is pressed is stale: its answer is asked again, not believed
    stale = []
    jobs.start("status", watch.job(client), stale.append, pytest.fail, if_busy="skip")
    session.begin_stop_train()
    one(jobs, "train", BackgroundCall(client.train_stop, what="stopping training"))
    watch.reset()
    collect(jobs)
    assert len(stale) == 1 and not watch.current(stale[0])

    answer, again = poll_until(lambda a: not a.running)
    assert not again and answer.task["status"] == "STOPPED" and answer.info is not None
    assert session.training.state == "STOPPED" and session.allowed("train")
    polls = client.calls.count(ROUTES["train_status"]) - sent
    assert polls >= 3 and watch.failures == 0
