"""AUTOMATIC1111's HTTP API (``/sdapi/v1``), the subset scripts, bots and plugins use, with A1111's field names
and response shapes (checked against the ``webuiapi`` client). Generation goes through the job queue, so
``/progress``, ``/interrupt`` and ``/skip`` work while a ``/txt2img`` call is waiting for its answer."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from unstatic.core.spacings import SPACINGS, schedule_label
from unstatic.pipelines.infotext import parse_infotext
from unstatic.sampling.registry import SAMPLERS
from unstatic.server.images import decode_image, read_infotext
from unstatic.server.schemas import (
    AUTOMATIC,
    Img2ImgRequest,
    OptionsRequest,
    PngInfoRequest,
    Txt2ImgRequest,
)
from unstatic.server.state import ServerState


def a1111_router(state: ServerState) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])

    @router.post("/txt2img")
    def txt2img(request: Txt2ImgRequest) -> dict[str, Any]:
        return state.run(request)

    @router.post("/img2img")
    def img2img(request: Img2ImgRequest) -> dict[str, Any]:
        return state.run(request)

    @router.get("/samplers")
    def samplers() -> list[dict[str, Any]]:
        return [{"name": info.display_name, "aliases": [info.name, *info.aliases],
                 "options": {"scheduler": info.default_scheduler}} for info in SAMPLERS.values()]

    @router.get("/schedulers")
    def schedulers() -> list[dict[str, Any]]:
        names = [AUTOMATIC, *SPACINGS]
        return [{"name": name, "label": name.title() if name == AUTOMATIC else schedule_label(name), "aliases": None, "default_rho": -1,
                 "need_inner_model": False} for name in names]

    @router.get("/sd-models")
    def sd_models() -> list[dict[str, Any]]:
        return [{"title": name, "model_name": name, "hash": None, "sha256": None, "filename": str(folder),
                 "config": None} for name, folder in state.registry.folders.items()]

    @router.get("/options")
    def get_options() -> dict[str, Any]:
        return {**state.options, "sd_model_checkpoint": state.registry.current}

    @router.post("/options")
    def set_options(request: OptionsRequest) -> dict[str, Any]:
        state.set_options(request.model_dump(exclude_none=True))
        return {}

    @router.get("/progress")
    def progress(skip_current_image: bool = False) -> dict[str, Any]:
        job = state.queue.running
        waiting = state.queue.queued
        idle = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "",
                "job_count": waiting, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
        if job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": idle, "current_image": None, "textinfo": None,
                    "current_task": None}
        running_state = {
            **idle, "skipped": job.skipped, "interrupted": job.interrupted, "job": f"job({job.number})",
            "job_count": waiting + 1, "job_no": job.iteration, "sampling_step": job.step, "sampling_steps": job.steps,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started or job.created)),
        }
        return {"progress": job.progress, "eta_relative": job.eta or 0.0, "state": running_state,
                "current_image": None if skip_current_image else job.preview_png(),
                "textinfo": f"step {job.step}/{job.steps}, batch {job.iteration + 1}/{job.iterations}",
                "current_task": job.id}

    @router.post("/interrupt")
    def interrupt() -> dict[str, Any]:
        job = state.queue.running
        if job is not None:
            job.interrupted = True
        return {}

    @router.post("/skip")
    def skip() -> dict[str, Any]:
        job = state.queue.running
        if job is not None:
            job.skipped = True
        return {}

    @router.post("/png-info")
    def png_info(request: PngInfoRequest) -> dict[str, Any]:
        image = decode_image(request.image)
        text = read_infotext(image)
        if text is None:
            return {"info": "", "items": {}, "parameters": {}}
        prompt, negative, settings = parse_infotext(text)
        return {"info": text, "items": {"parameters": text},
                "parameters": {"Prompt": prompt, "Negative prompt": negative, **settings}}

    @router.get("/scripts")
    def scripts() -> dict[str, list]:
        return {"txt2img": [], "img2img": []}  # no scripts; the webuiapi client asks on construction

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> dict[str, Any]:
        return {}  # models are listed at start-up; nothing to rescan

    return router
