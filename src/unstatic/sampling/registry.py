"""Samplers by name: the canonical names, and every alias A1111, ComfyUI and k-diffusion users type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from unstatic.core.spacings import normalise_name, resolve_spacing
from unstatic.sampling.samplers.dpmpp import sample_dpmpp_2m, sample_dpmpp_2s_ancestral
from unstatic.sampling.samplers.dpmpp_sde import sample_dpmpp_2m_sde, sample_dpmpp_3m_sde
from unstatic.sampling.samplers.euler import sample_ddim, sample_ddpm, sample_euler, sample_euler_ancestral
from unstatic.sampling.samplers.heun import sample_dpm_2, sample_dpm_2_ancestral, sample_heun
from unstatic.sampling.samplers.lcm import sample_lcm
from unstatic.sampling.samplers.lms import sample_lms
from unstatic.sampling.samplers.unipc import sample_unipc

Sampler = Callable[..., Tensor]


@dataclass(frozen=True)
class SamplerInfo:
    """A registered sampler and what a front end needs to know about it."""

    name: str
    fn: Sampler
    display_name: str  # as A1111 shows it
    stochastic: bool
    calls_per_step: int  # denoiser calls per step (the last step to sigma = 0 may need fewer)
    default_scheduler: str  # what A1111's "automatic" picks for it
    aliases: tuple[str, ...] = field(default=())


SAMPLERS: dict[str, SamplerInfo] = {
    info.name: info
    for info in [
        SamplerInfo("euler", sample_euler, "Euler", False, 1, "normal", ("k_euler",)),
        SamplerInfo("euler_ancestral", sample_euler_ancestral, "Euler a", True, 1, "normal", ("k_euler_a", "euler_a")),
        SamplerInfo("heun", sample_heun, "Heun", False, 2, "normal", ("k_heun",)),
        SamplerInfo("dpm_2", sample_dpm_2, "DPM2", False, 2, "karras", ("k_dpm_2", "dpm2")),
        SamplerInfo("dpm_2_ancestral", sample_dpm_2_ancestral, "DPM2 a", True, 2, "karras", ("k_dpm_2_a", "dpm2_a")),
        SamplerInfo("lms", sample_lms, "LMS", False, 1, "normal", ("k_lms",)),
        SamplerInfo("dpmpp_2m", sample_dpmpp_2m, "DPM++ 2M", False, 1, "karras", ("k_dpmpp_2m", "dpm++2m")),
        SamplerInfo(
            "dpmpp_2s_ancestral", sample_dpmpp_2s_ancestral, "DPM++ 2S a", True, 2, "karras", ("k_dpmpp_2s_a",)
        ),
        SamplerInfo("dpmpp_2m_sde", sample_dpmpp_2m_sde, "DPM++ 2M SDE", True, 1, "exponential", ("k_dpmpp_2m_sde",)),
        SamplerInfo("dpmpp_3m_sde", sample_dpmpp_3m_sde, "DPM++ 3M SDE", True, 1, "exponential", ("k_dpmpp_3m_sde",)),
        SamplerInfo("unipc", sample_unipc, "UniPC", False, 1, "normal", ("uni_pc", "unipc_bh2", "uni_pc_bh2")),
        SamplerInfo("lcm", sample_lcm, "LCM", True, 1, "normal", ("k_lcm",)),
        SamplerInfo("ddim", sample_ddim, "DDIM", False, 1, "ddim_uniform", ()),
        SamplerInfo("ddpm", sample_ddpm, "DDPM", True, 1, "ddim_uniform", ()),
    ]
}


def _lookup_table() -> dict[str, str]:
    table = {}
    for info in SAMPLERS.values():
        for alias in (info.name, info.display_name, *info.aliases):
            table[normalise_name(alias)] = info.name
    return table


_LOOKUP = _lookup_table()


def resolve_sampler(name: str) -> tuple[str, str | None]:
    """``(sampler, scheduler or None)`` for a name as users type it.

    Accepts canonical names (``dpmpp_2m``), A1111 display names (``DPM++ 2M``, ``Euler a``), their
    pre-1.9 forms with the scheduler appended (``DPM++ 2M Karras``, ``DPM++ 2M SDE Exponential``),
    k-diffusion/A1111 aliases (``k_dpmpp_2m``) and ComfyUI names (``uni_pc``).
    """
    key = normalise_name(name)
    if key in _LOOKUP:
        return _LOOKUP[key], None
    words = key.split(" ")
    for cut in range(1, min(3, len(words))):  # "DPM++ 2M Karras", "Euler a SGM Uniform"
        head, tail = " ".join(words[:-cut]), " ".join(words[-cut:])
        if head in _LOOKUP:
            try:
                return _LOOKUP[head], resolve_spacing(tail)
            except ValueError:
                continue
    known = ", ".join(sorted({info.display_name for info in SAMPLERS.values()} | set(SAMPLERS)))
    raise ValueError(f"unknown sampler {name!r}; known: {known}")


def get_sampler(name: str) -> Sampler:
    """The sampler function for a name (any alias resolve_sampler accepts)."""
    return SAMPLERS[resolve_sampler(name)[0]].fn


def sample(name: str, denoiser, x: Tensor, sigmas: Tensor, **options) -> Tensor:
    """Run the named sampler: ``sample("DPM++ 2M", denoiser, x, sigmas, cond=..., callback=...)``."""
    return get_sampler(name)(denoiser, x, sigmas, **options)
