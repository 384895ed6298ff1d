"""Core math: noise frames, prediction conversions, beta schedules and sigma spacings.

No ``torch.nn`` modules and no I/O live here; everything above imports from this layer.
"""

from unstatic.core.betas import (
    BETA_SCHEDULES,
    DiscreteSchedule,
    make_betas,
    rescale_zero_terminal_snr,
)
from unstatic.core.continuous import EDMSchedule, FlowSchedule, NoiseSchedule, VPSDESchedule
from unstatic.core.frames import (
    INFINITE_NOISE_SIGMA,
    add_noise,
    add_noise_flow,
    add_noise_vp,
    alpha_cumprod_from_sigma,
    flow_t_from_sigma,
    from_flow_frame,
    from_vp_frame,
    sigma_from_alpha_cumprod,
    sigma_from_flow_t,
    to_flow_frame,
    to_vp_frame,
)
from unstatic.core.predictions import PREDICTIONS, from_x0, to_x0
from unstatic.core.spacings import SPACINGS, get_sigmas, resolve_spacing

__all__ = [
    "BETA_SCHEDULES",
    "DiscreteSchedule",
    "EDMSchedule",
    "FlowSchedule",
    "INFINITE_NOISE_SIGMA",
    "NoiseSchedule",
    "PREDICTIONS",
    "SPACINGS",
    "VPSDESchedule",
    "add_noise",
    "add_noise_flow",
    "add_noise_vp",
    "alpha_cumprod_from_sigma",
    "flow_t_from_sigma",
    "from_flow_frame",
    "from_vp_frame",
    "from_x0",
    "get_sigmas",
    "make_betas",
    "rescale_zero_terminal_snr",
    "resolve_spacing",
    "sigma_from_alpha_cumprod",
    "sigma_from_flow_t",
    "to_flow_frame",
    "to_vp_frame",
    "to_x0",
]
