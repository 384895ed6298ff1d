"""From a validated A1111 request to pipeline calls and back to an A1111 response. The server's only contact
with generation: it calls ``text_to_image`` (through the loaded pipeline), ``image_to_image`` and ``inpaint``,
and translates names and defaults the way A1111 reads them. No sampling logic here."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

from unstatic.core.spacings import resolve_spacing
from unstatic.pipelines.txt2img import MAX_SEED, GeneratedImage, TextToImagePipeline
from unstatic.sampling.registry import SAMPLERS, resolve_sampler
from unstatic.server.errors import ApiError
from unstatic.server.images import decode_image, encode_png
from unstatic.server.jobs import Job
from unstatic.server.models import ModelRegistry
from unstatic.server.schemas import AUTOMATIC, Img2ImgRequest, Txt2ImgRequest

DEFAULT_SAMPLER = "DPM++ 2M"  # when a request names none (A1111 would use Euler; this converges in fewer steps)


@dataclass
class Plan:
    """A request resolved against a model: canonical names, sizes and the first seed, ready to run."""

    kind: str
    model: str
    prompt: str
    negative_prompt: str
    sampler: str  # canonical registry name
    scheduler: str  # canonical spacing name
    steps: int
    cfg_scale: float
    width: int | None  # None: the init image's own size (img2img)
    height: int | None
    seed: int
    batch_size: int
    n_iter: int
    edit: dict[str, Any] = field(default_factory=dict)  # img2img/inpaint arguments

    def seed_of(self, iteration: int) -> int:
        # A1111 numbers seeds consecutively across the whole job: iteration i starts at seed + i * batch_size
        return self.seed + iteration * self.batch_size


def plan_txt2img(registry: ModelRegistry, request: Txt2ImgRequest, kind: str = "txt2img") -> Plan:
    """Resolve names and defaults and check what depends on the model; 4xx ApiErrors for what does not fit."""
    model = registry.resolve(request.model)
    info = registry.info(model)
    default_size = None if kind == "img2img" else info.image_size
    width, height = request.width or default_size, request.height or default_size
    for side, value in (("width", width), ("height", height)):
        if value is not None and value % info.size_factor:
            raise ApiError(422, "invalid request", f"{side}: {value} is not a multiple of {info.size_factor}, "
                           f"which model {model!r} needs")
    sampler, implied = resolve_sampler(request.sampler or DEFAULT_SAMPLER)
    scheduler = request.scheduler
    if scheduler is None or not scheduler.strip() or scheduler.strip().lower() == AUTOMATIC:
        scheduler = implied or SAMPLERS[sampler].default_scheduler  # what A1111's "automatic" picks
    total = request.batch_size * request.n_iter
    seed = random.randint(0, MAX_SEED - total + 1) if request.seed == -1 else request.seed
    if seed + total - 1 > MAX_SEED:
        raise ApiError(422, "invalid request", f"seed: {seed} + {total} images runs past the largest seed, {MAX_SEED}")
    return Plan(kind, model, request.prompt, request.negative_prompt, sampler, resolve_spacing(scheduler),
                request.steps, request.cfg_scale, width, height, seed, request.batch_size, request.n_iter)


def plan_img2img(registry: ModelRegistry, request: Img2ImgRequest) -> Plan:
    """As :func:`plan_txt2img`, plus the decoded init image and mask; a mask must match the image's size."""
    plan = plan_txt2img(registry, request, kind="img2img")
    images = [decode_image(data, f"init_images[{i}]") for i, data in enumerate(request.init_images)]
    image = images[0]  # A1111 cycles init images over the batch; we edit the first (documented)
    edit: dict[str, Any] = {"image": image, "strength": request.denoising_strength}
    if request.mask is not None and request.mask.strip():
        mask = decode_image(request.mask, "mask")
        if mask.size != image.size:
            raise ApiError(422, "invalid request", f"mask: {mask.width}x{mask.height} does not match the init image "
                           f"({image.width}x{image.height})")
        mask = _mask_luminance(mask)
        if request.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        edit.update(mask=mask, mask_blur=float(request.mask_blur), only_masked=request.inpaint_full_res,
                    padding=request.inpaint_full_res_padding)
    plan.edit = edit
    return plan


def _mask_luminance(mask: Image.Image) -> Image.Image:
    """White = repaint; transparent pixels count as black (keep), as A1111 reads masks."""
    if mask.mode in ("RGBA", "LA", "PA", "P"):
        mask = Image.alpha_composite(Image.new("RGBA", mask.size, (0, 0, 0, 255)), mask.convert("RGBA"))
    return mask.convert("L")


def run_plan(pipe: TextToImagePipeline, plan: Plan, job: Job) -> list[GeneratedImage]:
    """Run a plan as ``n_iter`` pipeline calls of ``batch_size`` images, reporting to ``job`` after every step.
    Interrupt and cancel stop at once (the images made so far are kept, as A1111 does); skip ends only the
    current call."""
    call = _pipeline_call(pipe, plan)
    images: list[GeneratedImage] = []
    for iteration in range(plan.n_iter):
        if job.stop_all:
            break
        job.begin_iteration(iteration, plan.n_iter, plan.steps)
        images += call(seed=plan.seed_of(iteration), callback=job.on_step)
    return images


def _pipeline_call(pipe: TextToImagePipeline, plan: Plan) -> Callable[..., list[GeneratedImage]]:
    common = dict(negative_prompt=plan.negative_prompt, num_inference_steps=plan.steps, guidance_scale=plan.cfg_scale,
                  sampler=plan.sampler, scheduler=plan.scheduler, num_images=plan.batch_size, width=plan.width,
                  height=plan.height)
    if plan.kind == "txt2img":
        return lambda **run: pipe(plan.prompt, **common, **run)
    edit = dict(plan.edit)
    image = edit.pop("image")
    shared = dict(conditioner=pipe.conditioner, model_name=pipe.name, **common)
    if "mask" in edit:
        from unstatic.pipelines.inpaint import inpaint

        mask = edit.pop("mask")
        return lambda **run: inpaint(pipe.model, image, mask, plan.prompt, **edit, **shared, **run)
    from unstatic.pipelines.img2img import image_to_image

    return lambda **run: image_to_image(pipe.model, image, plan.prompt, **edit, **shared, **run)


def a1111_response(request: Txt2ImgRequest, plan: Plan, images: list[GeneratedImage], job: Job) -> dict[str, Any]:
    """A1111's response: raw base64 PNGs (each carrying its infotext), the request echoed, ``info`` as a JSON
    string."""
    parameters = request.model_dump(mode="json")
    if isinstance(request, Img2ImgRequest) and not request.include_init_images:
        parameters.update(init_images=None, mask=None)  # A1111 does not echo the (large) inputs unless asked
    first = images[0] if images else None
    info = {
        "prompt": plan.prompt,
        "all_prompts": [g.prompt for g in images],
        "negative_prompt": plan.negative_prompt,
        "all_negative_prompts": [g.negative_prompt for g in images],
        "seed": plan.seed,
        "all_seeds": [g.seed for g in images],
        "subseed": -1,
        "all_subseeds": [-1] * len(images),
        "subseed_strength": 0,
        "width": first.image.width if first else plan.width,
        "height": first.image.height if first else plan.height,
        "sampler_name": SAMPLERS[plan.sampler].display_name,
        "scheduler": plan.scheduler,
        "cfg_scale": plan.cfg_scale,
        "steps": plan.steps,
        "batch_size": plan.batch_size,
        "n_iter": plan.n_iter,
        "sd_model_name": plan.model,
        "sd_model_hash": None,
        "denoising_strength": plan.edit.get("strength") if plan.kind == "img2img" else None,
        "index_of_first_image": 0,
        "infotexts": [g.infotext for g in images],
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started or job.created)),
        "interrupted": job.interrupted,
        "cancelled": job.cancel_requested,
    }
    encoded = [encode_png(g.image, g.infotext) for g in images] if request.send_images else []
    return {"images": encoded, "parameters": parameters, "info": json.dumps(info)}


def job_work(registry: ModelRegistry, request: Txt2ImgRequest, plan: Plan) -> Callable[[Job], dict[str, Any]]:
    """What the worker runs for a request: the pipeline calls, then the A1111 response (encoded off the event
    loop, in the worker)."""

    def work(job: Job) -> dict[str, Any]:
        return a1111_response(request, plan, run_plan(registry.pipeline(plan.model), plan, job), job)

    return work
