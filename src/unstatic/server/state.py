"""What the routes share: the model registry, the job queue, A1111's options, and the one way a request becomes
a job (validated and planned against its model first, so a bad request is refused before it waits in line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unstatic.server.errors import ApiError
from unstatic.server.generation import job_work, plan_img2img, plan_txt2img
from unstatic.server.jobs import CANCELLED, FAILED, Job, JobQueue
from unstatic.server.models import ModelRegistry
from unstatic.server.schemas import Img2ImgRequest, Txt2ImgRequest

MAX_STORED_OPTIONS = 256


@dataclass
class ServerState:
    registry: ModelRegistry
    queue: JobQueue
    options: dict[str, Any] = field(default_factory=dict)  # A1111 options clients set; echoed, not used

    def submit(self, request: Txt2ImgRequest) -> Job:
        """Plan a request (4xx if it does not fit its model) and queue it (429 if the queue is full)."""
        if isinstance(request, Img2ImgRequest):
            kind, plan = "img2img", plan_img2img(self.registry, request)
        else:
            kind, plan = "txt2img", plan_txt2img(self.registry, request)
        return self.queue.submit(kind, job_work(self.registry, request, plan))

    def run(self, request: Txt2ImgRequest) -> dict[str, Any]:
        """Submit and wait (A1111's synchronous endpoints): the response, or the job's error as an ApiError.
        An interrupted or cancelled job still answers with what it made, as A1111 does."""
        job = self.submit(request)
        job.done.wait()
        if job.state == FAILED:
            status = job.error_status or 500
            raise ApiError(status, "invalid request" if status < 500 else "generation failed", job.error or "")
        if job.state == CANCELLED and job.result is None:
            raise ApiError(409, "cancelled", f"job {job.id} was cancelled before it ran")
        return job.result

    def set_options(self, options: dict[str, Any]) -> None:
        checkpoint = options.pop("sd_model_checkpoint", None)
        if checkpoint is not None:
            self.registry.select(checkpoint)
        for key, value in options.items():
            if key not in self.options and len(self.options) >= MAX_STORED_OPTIONS:
                raise ApiError(422, "too many options", f"at most {MAX_STORED_OPTIONS} options are stored")
            self.options[key] = value
