"""Where img2img starts: the part of a sigma schedule that ``strength`` selects, and the noised start.

img2img (SDEdit, Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential
Equations", Sec. 3) noises the input to ``sigma_start`` (``x = image + sigma_start * noise``, the forward
process in the sigma frame) and runs the same sampler over the rest of the schedule. No wrapper and no loop of
its own: only the schedule is cut.

``strength`` in [0, 1] is the fraction of the schedule that is run. How many steps that is depends on which
convention a user knows (``steps`` is always the number the user asked for):

- ``"run"`` (default): ``steps`` is the number of steps actually run. The full schedule has
  ``int(steps / strength)`` steps and sampling starts ``steps`` from its end. This is A1111 with its
  "img2img: do exactly the amount of steps the slider specifies" option on (``img2img_fix_steps``), and it
  makes ``--steps 20`` cost the same at every strength.
- ``"a1111"``: A1111's default: the full schedule has ``steps`` steps and ``int(min(strength, 0.999) * steps)
  + 1`` of them are run.
- ``"diffusers"``: diffusers' img2img pipelines: the full schedule has ``steps`` steps and
  ``int(steps * strength)`` of them are run (at least one when strength > 0).

In every convention strength 0 runs nothing (the input comes back unchanged, no model call) and strength 1
runs the whole ``steps``-step schedule from pure noise, ignoring the input: exactly txt2img.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

STEP_CONVENTIONS = ("run", "a1111", "diffusers")


def img2img_steps(steps: int, strength: float, convention: str = "run") -> tuple[int, int]:
    """``(full, run)``: steps in the full schedule and steps actually run (0 when strength is 0)."""
    if convention not in STEP_CONVENTIONS:
        raise ValueError(f"steps convention must be one of {', '.join(STEP_CONVENTIONS)}, got {convention!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    if strength == 0.0:
        return steps, 0
    if strength == 1.0:
        return steps, steps
    if convention == "run":
        return max(steps, int(steps / strength)), steps
    if convention == "a1111":
        return steps, int(min(strength, 0.999) * steps) + 1  # A1111's setup_img2img_steps
    return steps, max(1, min(int(steps * strength), steps))  # diffusers' get_timesteps


def img2img_sigmas(
    sigmas_for: Callable[[int], Tensor], steps: int, strength: float, convention: str = "run"
) -> Tensor | None:
    """The sub-schedule to run (``run + 1`` sigmas ending in 0), or None when strength is 0.

    ``sigmas_for(n)`` builds a full schedule of ``n`` steps (e.g. ``lambda n: get_sigmas("karras", n, schedule)``).
    """
    full, run = img2img_steps(steps, strength, convention)
    if run == 0:
        return None
    sigmas = sigmas_for(full)
    return sigmas[full - run :]


def noised_start(image: Tensor, noise: Tensor, sigmas: Tensor, strength: float) -> Tensor:
    """The sampler's start ``image + sigma_start * noise``; at strength 1 ``sigma_max * noise`` alone, so the
    input is ignored exactly (and the result equals txt2img's start for the same noise)."""
    sigma_start = sigmas[0].to(noise.dtype)
    if strength == 1.0:
        return noise * sigma_start
    return image.to(noise) + noise * sigma_start
