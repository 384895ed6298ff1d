"""The job queue on its own (work functions that block on events, so every state is reached on purpose) and
the /v1 job API over the tiny models."""

from __future__ import annotations

import threading

import pytest
import torch

from tests.server.conftest import decode_png, wait_for
from unstatic.sampling.progress import StepInfo
from unstatic.server.errors import ApiError
from unstatic.server.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobQueue


def _step(step: int, steps: int) -> StepInfo:
    x = torch.full((1, 3, 2, 2), float(step))
    return StepInfo(step, steps, 1.0, 0.5, x, x)


def _blocking(release: threading.Event, started: threading.Event | None = None):
    def work(job: Job):
        if started is not None:
            started.set()
        release.wait(10)
        return "made"
    return work


def test_bounded_queue_positions_429_and_cancelling_a_waiting_job():
    queue, release, started = JobQueue(max_queued=2), threading.Event(), threading.Event()
    try:
        first = queue.submit("txt2img", _blocking(release, started))
        started.wait(5)
        second, third = (queue.submit("txt2img", _blocking(release)) for _ in range(2))
        assert first.state == RUNNING and queue.position(second) == 0 and queue.position(third) == 1
        with pytest.raises(ApiError) as full:
            queue.submit("txt2img", _blocking(release))
        assert full.value.status == 429
        queue.cancel(second)
        assert second.state == CANCELLED and second.done.is_set() and queue.position(third) == 0
        release.set()
        assert third.done.wait(5) and first.result == third.result == "made" and first.state == third.state == DONE
        assert second.result is None  # cancelled before it ran: never ran
    finally:
        release.set()
        queue.stop()


def test_progress_eta_and_stop_through_the_sampler_callback():
    queue, stepped, stop_seen = JobQueue(), threading.Event(), []

    def work(job: Job):
        job.begin_iteration(0, 2, 10)
        for step in range(10):
            if job.on_step(_step(step, 10)):
                stop_seen.append(step)
                return "partial"
            if step == 4:
                stepped.set()
                wait_for(lambda: job.cancel_requested, timeout=5)
        return "whole"

    try:
        job = queue.submit("txt2img", work)
        stepped.wait(5)
        assert job.progress == pytest.approx(5 / 20) and job.eta is not None and job.eta > 0
        # the estimate after step 4 (every value 4.0) as pixels, clipped to white; encoded once per step
        assert job.preview.size == (2, 2) and job.preview.getextrema() == ((255, 255),) * 3
        assert job.preview_png() is job.preview_png() and decode_png(job.preview_png()).size == (2, 2)
        queue.cancel(job)
        assert job.done.wait(5) and job.state == CANCELLED and job.result == "partial" and stop_seen == [5]
    finally:
        queue.stop()


@pytest.mark.parametrize("error, status", [(ValueError("unknown class 'x'"), 422), (RuntimeError("bug"), 500),
                                           (ApiError(501, "no", "not here"), 501)])
def test_failures_are_recorded_and_the_worker_goes_on(error, status):
    queue = JobQueue()

    def fail(job):
        raise error

    try:
        failed = queue.submit("txt2img", fail)
        after = queue.submit("txt2img", lambda job: "fine")
        assert after.done.wait(5) and after.state == DONE
        assert failed.state == FAILED and failed.error_status == status and str(error) in failed.error
    finally:
        queue.stop()


def test_finished_jobs_are_kept_for_a_while_then_dropped():
    queue = JobQueue(keep_finished=2)
    try:
        jobs = [queue.submit("txt2img", lambda job: None) for _ in range(3)]
        assert jobs[-1].done.wait(5)
        wait_for(lambda: queue.get(jobs[0].id) is None)
        assert queue.get(jobs[1].id) is jobs[1] and queue.get(jobs[2].id) is jobs[2]
        queue.keep(1)  # a shorter history applies at once
        assert queue.get(jobs[1].id) is None and queue.get(jobs[2].id) is jobs[2]
    finally:
        queue.stop()


def test_job_api_submit_poll_preview_result(client):
    created = client.post("/v1/jobs", json={"type": "txt2img", "request": {"prompt": "star", "steps": 3, "seed": 9}})
    assert created.status_code == 202 and created.json()["state"] in (QUEUED, RUNNING)
    url = created.json()["url"]
    job = wait_for(lambda: (j := client.get(url).json())["state"] == DONE and j)
    assert job["progress"] == 1 and job["error"] is None and job["preview"] is None
    assert decode_png(job["result"]["images"][0]).size == (8, 8)
    assert client.delete(url).json()["state"] == DONE  # forgetting a finished job
    assert client.get(url).status_code == 404


def test_job_api_running_job_shows_a_preview_and_cancels(client):
    job_id = client.post("/v1/jobs", json={"request": {"prompt": "star", "steps": 1000}}).json()["id"]
    running = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["step"] > 0 and j)
    assert running["state"] == RUNNING and running["steps"] == 1000 and decode_png(running["preview"]).size == (8, 8)
    assert client.get(f"/v1/jobs/{job_id}?preview=false").json()["preview"] is None
    assert client.delete(f"/v1/jobs/{job_id}").json()["cancel_requested"]
    stopped = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["state"] == CANCELLED and j)
    assert stopped["step"] < 1000


def test_job_api_answers_429_when_the_queue_is_full(client):
    """The client's app holds 2 waiting jobs: one running and two waiting fill it."""
    slow = {"request": {"prompt": "star", "steps": 1000}}
    ids = [client.post("/v1/jobs", json=slow).json()["id"]]
    wait_for(lambda: client.get(f"/v1/jobs/{ids[0]}").json()["state"] == RUNNING)
    try:
        ids += [client.post("/v1/jobs", json=slow).json()["id"] for _ in range(2)]
        assert [client.get(f"/v1/jobs/{i}").json()["queue_position"] for i in ids] == [None, 0, 1]
        full = client.post("/v1/jobs", json=slow)
        assert full.status_code == 429 and full.json()["error"] == "queue full"
        assert client.get("/sdapi/v1/progress").json()["state"]["job_count"] == 3
    finally:
        for job_id in reversed(ids):
            client.delete(f"/v1/jobs/{job_id}")
    wait_for(lambda: client.get(f"/v1/jobs/{ids[0]}").json()["state"] == CANCELLED)
    assert [client.get(f"/v1/jobs/{i}").json()["state"] for i in ids[1:]] == [CANCELLED, CANCELLED]


@pytest.mark.parametrize("body, status, message", [
    ({"type": "video"}, 422, "type"),
    ({"request": {"steps": 0}}, 422, "request.steps"),
    ({"request": {"width": 7}}, 422, "request.width"),
    ({"type": "img2img", "request": {}}, 422, "request.init_images"),
    ({"request": {}, "extra": 1}, 422, "extra"),
])
def test_job_api_bad_requests(client, body, status, message):
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == status and message in response.json()["detail"], response.text


def test_unknown_job_is_404(client):
    assert client.get("/v1/jobs/nope").status_code == 404 and client.delete("/v1/jobs/nope").status_code == 404


def test_models_describe_sizes_and_classes(client):
    tiny = next(m for m in client.get("/v1/models").json() if m["name"] == "tiny")
    assert tiny["current"] and tiny["image_size"] == 8 and tiny["size_factor"] == 2 and tiny["guidance"] == 5.0
    assert tiny["class_names"] == ["circle", "square", "star"] and tiny["conditioning"] == "class"
