"""A bounded job queue with one worker thread: requests become jobs that run one at a time (a model on a CPU or
one GPU gains nothing from running two at once), each with its own state, progress, ETA, preview and result.

States: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled`` (a queued job can be cancelled
without running). Stopping a running job goes through the sampler callback: returning True stops the sampler,
which returns its latest clean estimate (``sampling/progress.py``), so the worker is never killed mid-step.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from unstatic.sampling.progress import StepInfo
from unstatic.server.errors import ApiError
from unstatic.server.images import encode_png, preview_image

log = logging.getLogger("unstatic.server")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass(eq=False)
class Job:
    """One request's work and everything a client may ask about it while it waits and runs."""

    kind: str  # "txt2img" or "img2img"
    work: Callable[[Job], Any] | None  # runs in the worker; its return value is the result. Dropped once it has
    # run: it holds the request (init images, masks), which a finished job kept in the history has no use for.
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    number: int = 0  # submission order, for A1111's job_no
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: Any = None
    error: str | None = None
    error_status: int | None = None
    # Progress: the work runs `iterations` sampler calls of `steps` steps each (A1111's n_iter).
    iteration: int = 0
    iterations: int = 1
    step: int = 0
    steps: int = 0
    preview: Image.Image | None = None  # the first image's clean estimate after the latest step (None for latents)
    _preview_png: tuple[Image.Image, str] | None = field(default=None, repr=False)  # (preview, its base64 PNG)
    interrupted: bool = False  # stop now and keep what was made (A1111's interrupt)
    skipped: bool = False  # stop the current sampler call, go on with the next iteration (A1111's skip)
    cancel_requested: bool = False  # stop now and discard (DELETE /v1/jobs/{id})
    done: threading.Event = field(default_factory=threading.Event)

    def begin_iteration(self, iteration: int, iterations: int, steps: int) -> None:
        self.iteration, self.iterations, self.steps, self.step = iteration, iterations, steps, 0
        self.skipped = False

    def on_step(self, info: StepInfo) -> bool:
        """The sampler callback: record progress and preview; True asks the sampler to stop."""
        # Converted to pixels here, in the worker: the request threads that read it then never call into torch
        # (measured: previews converted in uvicorn's short-lived request threads grew the server's memory with
        # every round of load). Stored before the step count, so a reader that sees step > 0 finds a preview.
        self.preview = preview_image(info.denoised[0])
        self.step, self.steps = info.step + 1, info.steps
        return self.should_stop

    def preview_png(self) -> str | None:
        """The preview as a raw base64 PNG, encoded once per step however many clients poll it."""
        image, encoded = self.preview, self._preview_png
        if image is None:
            return None
        if encoded is None or encoded[0] is not image:
            encoded = self._preview_png = (image, encode_png(image))
        return encoded[1]

    @property
    def should_stop(self) -> bool:
        return self.interrupted or self.skipped or self.cancel_requested

    @property
    def stop_all(self) -> bool:
        """True when no further iteration should start."""
        return self.interrupted or self.cancel_requested

    @property
    def progress(self) -> float:
        if self.state == DONE:
            return 1.0
        total = max(self.iterations * self.steps, 1)
        return min((self.iteration * self.steps + self.step) / total, 1.0)

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the time per unit of progress so far (A1111's eta_relative)."""
        if self.state != RUNNING or self.started is None or self.progress <= 0:
            return None
        elapsed = time.time() - self.started
        return max(elapsed / self.progress - elapsed, 0.0)


class JobQueue:
    """Jobs waiting (at most ``max_queued``), the one running, and the last ``keep_finished`` finished ones."""

    def __init__(self, max_queued: int = 16, keep_finished: int = 100) -> None:
        if max_queued < 1:
            raise ValueError(f"the queue must hold at least one job, got {max_queued}")
        self.max_queued, self.keep_finished = max_queued, keep_finished
        self._waiting: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished: OrderedDict[str, Job] = OrderedDict()
        self.running: Job | None = None
        self.last: Job | None = None  # the latest job to start, for /sdapi/v1/progress after it ends
        self._numbers = itertools.count(1)
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def submit(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Queue a job and return it at once; a 429 when ``max_queued`` jobs already wait."""
        with self._cond:
            if len(self._waiting) >= self.max_queued:
                raise ApiError(429, "queue full", f"{len(self._waiting)} jobs are waiting (the limit); try again later",
                               headers={"Retry-After": "5"})
            job = Job(kind, work, number=next(self._numbers))
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._ensure_worker()
            self._cond.notify()
            return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """0 for the next job to run, 1 for the one after it, ...; None when it is not waiting."""
        with self._cond:
            for index, waiting in enumerate(self._waiting):
                if waiting is job:
                    return index
        return None

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def cancel(self, job: Job) -> None:
        """Cancel a waiting job now, or ask a running one to stop after its current step."""
        with self._cond:
            if job.state == QUEUED:
                self._waiting.remove(job)
                job.state, job.finished = CANCELLED, time.time()
                self._retire(job)
                job.done.set()
            elif job.state == RUNNING:
                job.cancel_requested = True

    def forget(self, job: Job) -> None:
        """Drop a finished job from memory."""
        with self._cond:
            if job.state in FINISHED:
                self._jobs.pop(job.id, None)
                self._finished.pop(job.id, None)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything and end the worker (server shutdown)."""
        with self._cond:
            self._stopping = True
            for job in list(self._waiting):
                self.cancel(job)
            if self.running is not None:
                self.running.cancel_requested = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="unstatic-worker", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._waiting.popleft()
                job.state, job.started = RUNNING, time.time()
                self.running = self.last = job
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            job.result = job.work(job)
            job.state = CANCELLED if job.cancel_requested else DONE
        except ApiError as error:
            job.state, job.error, job.error_status = FAILED, error.detail, error.status
        except ValueError as error:  # the pipelines' word for a request that does not fit the model
            job.state, job.error, job.error_status = FAILED, str(error), 422
        except Exception as error:  # a bug: report it, keep the worker alive for the next job
            log.exception("job %s failed", job.id)
            job.state, job.error, job.error_status = FAILED, f"{type(error).__name__}: {error}", 500
        finally:
            with self._cond:
                # The history keeps up to keep_finished jobs: only their results, not work or previews.
                job.finished, job.work, job.preview, job._preview_png = time.time(), None, None, None
                self.running = None
                self._retire(job)
            job.done.set()

    def keep(self, finished: int) -> None:
        """Keep the last ``finished`` finished jobs from now on, dropping older ones at once."""
        with self._cond:
            self.keep_finished = finished
            self._trim()

    def _retire(self, job: Job) -> None:
        self._finished[job.id] = job
        self._trim()

    def _trim(self) -> None:
        while len(self._finished) > self.keep_finished:
            old_id, _ = self._finished.popitem(last=False)
            self._jobs.pop(old_id, None)
