"""Request bodies with A1111's field names (``modules/api/models.py``), checked before any work is queued.

Fields A1111 clients send that have no meaning here (hires fix, face restoration, tiling, scripts, ...) are
accepted and ignored, so unmodified clients work; the ones that shape the result are validated with ranges, and
the few that depend on the model (sizes must be multiples of its down-sampling factor) are checked against it
in ``generation.py``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unstatic.core.spacings import resolve_spacing
from unstatic.pipelines.txt2img import MAX_SEED
from unstatic.sampling.registry import resolve_sampler

MIN_SIZE, MAX_SIZE = 8, 2048
MAX_STEPS = 1000
MAX_BATCH, MAX_ITERATIONS = 64, 100
AUTOMATIC = "automatic"  # A1111's scheduler name for "the sampler's own default"


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # A1111 clients send ~50 keys; unknown ones are not errors


class Txt2ImgRequest(_Request):
    prompt: str = Field("", max_length=20_000)
    negative_prompt: str = Field("", max_length=20_000)
    seed: int = Field(-1, ge=-1, le=MAX_SEED, description="-1: random")
    sampler_name: str | None = Field(None, max_length=100)
    sampler_index: str | None = Field(None, max_length=100, description="A1111's old name for sampler_name")
    scheduler: str | None = Field(None, max_length=100, description="'automatic' or None: the sampler's default")
    batch_size: int = Field(1, ge=1, le=MAX_BATCH)
    n_iter: int = Field(1, ge=1, le=MAX_ITERATIONS)
    steps: int = Field(20, ge=1, le=MAX_STEPS)
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0)
    width: int | None = Field(None, ge=MIN_SIZE, le=MAX_SIZE, description="default: the model's size")
    height: int | None = Field(None, ge=MIN_SIZE, le=MAX_SIZE, description="default: the model's size")
    override_settings: dict[str, Any] | None = None
    send_images: bool = True

    @field_validator("sampler_name", "sampler_index")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            resolve_sampler(value)  # ValueError names the known samplers; pydantic makes it a 422
        return value

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str | None) -> str | None:
        if value is not None and value.strip() and value.strip().lower() != AUTOMATIC:
            resolve_spacing(value)
        return value

    @field_validator("cfg_scale")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def model(self) -> str | None:
        """A per-request model (A1111: ``override_settings.sd_model_checkpoint``), or None for the current one."""
        value = (self.override_settings or {}).get("sd_model_checkpoint")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def sampler(self) -> str | None:
        for value in (self.sampler_name, self.sampler_index):
            if value is not None and value.strip():
                return value
        return None


class Img2ImgRequest(Txt2ImgRequest):
    init_images: list[str] = Field(..., min_length=1, max_length=MAX_BATCH)
    mask: str | None = None
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0)
    mask_blur: float = Field(4, ge=0, le=256)
    inpainting_fill: int = Field(0, ge=0, le=3, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool = False  # A1111's "only masked"
    inpaint_full_res_padding: int = Field(32, ge=0, le=MAX_SIZE)
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    resize_mode: int = Field(0, ge=0, le=3)
    include_init_images: bool = False


class OptionsRequest(BaseModel):
    """POST /sdapi/v1/options: ``sd_model_checkpoint`` switches the model; other keys are stored and echoed."""

    model_config = ConfigDict(extra="allow")
    sd_model_checkpoint: str | None = Field(None, max_length=1000)


class PngInfoRequest(BaseModel):
    image: str = Field(..., max_length=64 * 1024 * 1024)


class JobRequest(BaseModel):
    """POST /v1/jobs: ``{"type": "txt2img" | "img2img", "request": {A1111 fields}}``."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field("txt2img", pattern="^(txt2img|img2img)$")
    request: dict[str, Any] = Field(default_factory=dict)
