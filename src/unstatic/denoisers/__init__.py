"""The denoiser interface ``D(x, sigma, cond) -> x0_hat`` and the wrappers that give networks that shape."""

from unstatic.denoisers.gaussian_mixture import GaussianMixture
from unstatic.denoisers.precondition import INPUT_SCALINGS, NetworkFromDenoiser, Preconditioned
from unstatic.denoisers.protocol import Cond, Denoiser, Network, concat_conds

__all__ = [
    "Cond",
    "Denoiser",
    "GaussianMixture",
    "INPUT_SCALINGS",
    "Network",
    "NetworkFromDenoiser",
    "Preconditioned",
    "concat_conds",
]
