"""The job API A1111 users have long asked for (``/v1``): submit and get an id at once, poll state, queue
position, progress, ETA and a live preview, fetch the result, cancel. Also ``/v1/models``, what the web page
needs to build valid requests (sizes, classes)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from unstatic.server.errors import ApiError, validation_message
from unstatic.server.jobs import FINISHED, Job
from unstatic.server.schemas import Img2ImgRequest, JobRequest, Txt2ImgRequest
from unstatic.server.state import ServerState


def describe_job(state: ServerState, job: Job, preview: bool = True) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.kind,
        "state": job.state,
        "queue_position": state.queue.position(job),
        "progress": job.progress,
        "eta": job.eta,
        "step": job.step,
        "steps": job.steps,
        "iteration": job.iteration,
        "iterations": job.iterations,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "cancel_requested": job.cancel_requested,
        "preview": job.preview_png() if preview and job.state not in FINISHED else None,
        "result": job.result,
        "error": job.error,
    }


def job_router(state: ServerState) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["jobs"])

    def find(job_id: str) -> Job:
        job = state.queue.get(job_id)
        if job is None:
            raise ApiError(404, "unknown job", f"no job {job_id!r} (finished jobs are kept for a while, then dropped)")
        return job

    @router.post("/jobs", status_code=202)
    def submit(body: JobRequest) -> dict[str, Any]:
        schema = Img2ImgRequest if body.type == "img2img" else Txt2ImgRequest
        try:
            request = schema.model_validate(body.request)
        except ValidationError as error:
            raise ApiError(*validation_message(error.errors(), prefix="request.")) from None
        job = state.submit(request)
        return {"id": job.id, "state": job.state, "queue_position": state.queue.position(job),
                "url": f"/v1/jobs/{job.id}"}

    @router.get("/jobs/{job_id}")
    def get(job_id: str, preview: bool = True) -> dict[str, Any]:
        return describe_job(state, find(job_id), preview)

    @router.delete("/jobs/{job_id}")
    def cancel(job_id: str) -> dict[str, Any]:
        """Cancel a waiting job, ask a running one to stop after its current step, forget a finished one."""
        job = find(job_id)
        if job.state in FINISHED:
            state.queue.forget(job)
        else:
            state.queue.cancel(job)
        return describe_job(state, job, preview=False)

    @router.get("/models")
    def models() -> list[dict[str, Any]]:
        """Every model by name; sizes and classes for the current one and those already loaded (describing
        the others would load them all)."""
        infos = []
        for name in state.registry.names:
            entry: dict[str, Any] = {"name": name, "current": name == state.registry.current,
                                     "loaded": state.registry.is_loaded(name)}
            if entry["current"] or entry["loaded"]:
                entry.update({k: v for k, v in asdict(state.registry.info(name)).items() if k != "folder"}, loaded=True)
            infos.append(entry)
        return infos

    return router
