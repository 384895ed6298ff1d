"""Sampler accuracy at fixed denoiser-call budgets on a problem with an exact denoiser.

Data: a mixture of K diagonal Gaussians in D dimensions (float64). Its posterior mean is closed-form, so the
denoiser is exact and the probability-flow ODE end point from any start is known to ~1e-11
(``GaussianMixture.ode_solution``). Every sampler starts from the same 32 points at sigma_max on the same
Karras grid (SD's sigma range, rho 7) and is scored by the RMSE of its output against that end point.

For each NFE budget every sampler gets the largest number of steps whose *counted* denoiser calls fit the
budget (calls are counted by wrapping the denoiser; formulas are not trusted).

Libraries compared: unstatic (each deterministic sampler with ``final_step="extrapolate"`` and ``"plain"``),
k-diffusion and diffusers (when installed). diffusers is driven through its own scheduler loop
(``scale_model_input`` + model + ``step``) with an "epsilon" model in the scheduler's own frame (sigma frame
for Euler/Heun/KDPM2/LMS, VP frame for the multistep solvers) built from the exact sigma-frame denoiser,
and ``use_karras_sigmas=True`` on SD's beta schedule, which gives the same Karras grid (checked below).

Run:  .venv/bin/python -m benchmarks.sampler_accuracy      (about 1-3 minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import inspect
import math
import time
import warnings
from collections.abc import Callable

import torch

from tests.references import load_diffusers_schedulers, load_k_diffusion_sampling
from unstatic.core import EDMSchedule, get_sigmas
from unstatic.denoisers import GaussianMixture
from unstatic.sampling.registry import SAMPLERS

BUDGETS = (5, 10, 15, 20, 30, 50)
F64 = torch.float64

# Den: the exact sigma-frame denoiser, den(x [B, D], sigma [B]) -> x0_hat
Den = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Solver: solve(den, x_start at sigma_max, steps) -> sample at sigma = 0
Solver = Callable[[Den, torch.Tensor, int], torch.Tensor]


# --------------------------------------------------------------------------------------------- problem setup


def sd_sigma_range() -> tuple[float, float]:
    """SD's sigma_min / sigma_max exactly as diffusers computes them (float32 table from scaled_linear betas),
    so that our Karras grid and the one diffusers builds with ``use_karras_sigmas=True`` coincide."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    return float(sigmas[0]), float(sigmas[-1])


SIGMA_MIN, SIGMA_MAX = sd_sigma_range()  # 0.0292, 14.6146


def karras_grid(steps: int) -> torch.Tensor:
    """The shared grid: unstatic's Karras spacing, rounded to float32 (diffusers keeps its sigmas in float32,
    so rounding here makes all three libraries step on bit-identical noise levels), held as float64."""
    return get_sigmas("karras", steps, EDMSchedule(SIGMA_MIN, SIGMA_MAX)).float().double()


def make_problem(dim: int, components: int, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(components, dim, generator=g, dtype=F64) * 0.5
    log_lo, log_hi = math.log(0.05), math.log(0.5)  # per-coordinate stds, log-uniform in [0.05, 0.5]
    stds = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(components, dim, generator=g, dtype=F64))
    mixture = GaussianMixture(means, stds)
    x_start = torch.randn(batch, dim, generator=g, dtype=F64) * SIGMA_MAX
    return mixture, x_start


class Counter:
    """Wraps a denoiser and counts its calls."""

    def __init__(self, den: Den) -> None:
        self.den, self.calls = den, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.den(x, sigma)


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean().sqrt())


# --------------------------------------------------------------------------------------------- unstatic rows


def unstatic_rows() -> list[tuple[str, str, Solver]]:
    rows = []

    def solver(fn, **opts) -> Solver:
        return lambda den, x, n: fn(lambda x_, s_, cond=None: den(x_, s_), x.clone(), karras_grid(n), **opts)

    for name, info in SAMPLERS.items():
        if info.stochastic:
            continue
        has_final = "final_step" in inspect.signature(info.fn).parameters
        variants = [("", {})]
        if name == "unipc":
            variants = [(" o2 bh2", {"order": 2}), (" o3 bh2", {"order": 3}), (" o3 bh1", {"order": 3, "variant": "bh1"})]
        for suffix, opts in variants:
            if has_final:
                for final in ("extrapolate", "plain"):
                    rows.append(("unstatic", f"{name}{suffix} [{final}]", solver(info.fn, final_step=final, **opts)))
            else:
                rows.append(("unstatic", f"{name}{suffix} [no final_step opt]", solver(info.fn, **opts)))
    # the SDE multistep samplers with eta = 0 are deterministic ODE solvers; listed to pair with k-diffusion's
    rows.append(("unstatic", "dpmpp_2m_sde eta=0", solver(SAMPLERS["dpmpp_2m_sde"].fn, eta=0.0)))
    rows.append(("unstatic", "dpmpp_3m_sde eta=0", solver(SAMPLERS["dpmpp_3m_sde"].fn, eta=0.0)))
    return rows


# --------------------------------------------------------------------------------------------- k-diffusion rows


def k_diffusion_rows(kd) -> list[tuple[str, str, Solver]]:
    def solver(fn, **opts) -> Solver:
        def solve(den, x, n):
            return fn(lambda x_, s_, **kw: den(x_, s_), x.clone(), karras_grid(n), disable=True, **opts)

        return solve

    return [
        ("k-diffusion", "sample_euler", solver(kd.sample_euler)),
        ("k-diffusion", "sample_heun", solver(kd.sample_heun)),
        ("k-diffusion", "sample_dpm_2", solver(kd.sample_dpm_2)),
        ("k-diffusion", "sample_lms", solver(kd.sample_lms)),
        ("k-diffusion", "sample_dpmpp_2m", solver(kd.sample_dpmpp_2m)),
        ("k-diffusion", "sample_dpmpp_2m_sde eta=0", solver(kd.sample_dpmpp_2m_sde, eta=0.0)),
        ("k-diffusion", "sample_dpmpp_3m_sde eta=0", solver(kd.sample_dpmpp_3m_sde, eta=0.0)),
    ]


# --------------------------------------------------------------------------------------------- diffusers rows

SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def diffusers_specs(ds) -> list[tuple[str, Callable, bool]]:
    """(label, scheduler factory, vp_frame). Every scheduler gets SD's betas, Karras sigmas, epsilon prediction
    and "linspace" timestep spacing (so the Karras range is the full table, as in our grid)."""
    common = dict(SD_BETAS, use_karras_sigmas=True, prediction_type="epsilon", timestep_spacing="linspace")
    specs = [
        ("EulerDiscrete", lambda: ds.EulerDiscreteScheduler(**common), False),
        ("HeunDiscrete", lambda: ds.HeunDiscreteScheduler(**common), False),
        ("KDPM2Discrete", lambda: ds.KDPM2DiscreteScheduler(**common), False),
        ("LMSDiscrete", lambda: ds.LMSDiscreteScheduler(**common), False),
        (
            "DPMSolverMultistep ++2M",
            lambda: ds.DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2),
            True,
        ),
        (
            "DPMSolverMultistep ++3M",
            lambda: ds.DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=3),
            True,
        ),
        ("UniPCMultistep bh2 o2", lambda: ds.UniPCMultistepScheduler(**common, solver_type="bh2", solver_order=2), True),
        ("UniPCMultistep bh2 o3", lambda: ds.UniPCMultistepScheduler(**common, solver_type="bh2", solver_order=3), True),
    ]
    return specs


def model_sigma(scheduler, i: int, vp: bool) -> torch.Tensor:
    """The (float32) sigma the scheduler is evaluating the model at, read from its own state.

    The timesteps diffusers hands the model are rounded for several schedulers, so the model must not
    invert them; the sigma frame's schedulers know their position after ``scale_model_input``."""
    if vp:  # multistep VP solvers: one call per entry of .timesteps, sigmas[i] is the current level
        return scheduler.sigmas[i]
    if hasattr(scheduler, "sigmas_interpol") and not scheduler.state_in_first_order:  # KDPM2's midpoint call
        return scheduler.sigmas_interpol[scheduler.step_index]
    return scheduler.sigmas[scheduler.step_index]


def diffusers_solver(make_scheduler, vp: bool) -> Solver:
    def solve(den, x, n):
        scheduler = make_scheduler()
        scheduler.set_timesteps(n)
        sig0 = scheduler.sigmas[0]
        # VP frame: x_vp = alpha x_sigma with alpha = 1 / sqrt(1 + sigma^2) (diffusers' _sigma_to_alpha_sigma_t)
        sample = x * (1 / ((sig0**2 + 1) ** 0.5)).double() if vp else x.clone()
        for i, t in enumerate(scheduler.timesteps):
            model_in = scheduler.scale_model_input(sample, t)
            s32 = model_sigma(scheduler, i, vp)
            # back to the sigma frame with the same float32 factor the scheduler divided by
            x_sigma = model_in * ((s32**2 + 1) ** 0.5).double()
            s = s32.double().expand(x.shape[0])
            eps = (x_sigma - den(x_sigma, s)) / s[:, None]
            sample = scheduler.step(eps, t, sample, return_dict=False)[0]
        return sample.double()  # at sigma = 0 both frames are the data frame

    return solve


def diffusers_rows(ds) -> list[tuple[str, str, Solver]]:
    return [("diffusers", label, diffusers_solver(make, vp)) for label, make, vp in diffusers_specs(ds)]


def diffusers_grid_check(ds, steps: int = 10) -> list[str]:
    """Max relative difference between each scheduler's distinct sigmas and our grid."""
    ours = karras_grid(steps)
    lines = []
    for label, make, _ in diffusers_specs(ds):
        scheduler = make()
        scheduler.set_timesteps(steps)
        theirs = torch.unique_consecutive(scheduler.sigmas.double())
        if theirs.shape != ours.shape:
            lines.append(f"  {label:<26} grid has {len(theirs)} levels, ours {len(ours)}: MISMATCH")
            continue
        rel = float(((theirs - ours).abs() / ours.clamp_min(1e-12)).max())
        lines.append(f"  {label:<26} max rel. diff to our grid: {rel:.1e}" + ("" if rel < 1e-6 else "  MISMATCH"))
    return lines


# --------------------------------------------------------------------------------------------- driver


def steps_for_budgets(solve: Solver, dim: int, budgets=BUDGETS) -> dict[int, tuple[int, int]]:
    """budget -> (steps, counted calls): the most steps whose counted calls fit the budget.

    Calls are counted by running the sampler with a cheap stand-in denoiser on a batch of one (the count does
    not depend on the values). Assumes only that the count does not decrease with the step count; the search
    starts from an estimate and walks to the boundary, so every reported count was measured."""
    x = torch.randn(1, dim, dtype=F64) * SIGMA_MAX
    counts: dict[int, int | None] = {}

    def calls(n: int) -> int | None:
        if n not in counts:
            counter = Counter(lambda x_, s_: 0.5 * x_)
            try:
                solve(counter, x, n)
                counts[n] = counter.calls
            except Exception:  # noqa: BLE001 - a library refusing a step count just leaves it out
                counts[n] = None
        return counts[n]

    def fits(n: int, budget: int) -> bool:
        c = calls(n)
        return c is not None and c <= budget

    picks = {}
    for budget in budgets:
        probe = calls(budget)
        n = budget if probe is None else max(2, int(budget * budget / max(probe, 1)))
        while n > 2 and not fits(n, budget):
            n -= 1
        if not fits(n, budget):
            continue
        while fits(n + 1, budget):
            n += 1
        picks[budget] = (n, counts[n])
    return picks


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()

    mixture, x_start = make_problem(args.dim, args.components, args.batch, args.seed)
    den: Den = lambda x, s: mixture(x, s)  # noqa: E731
    print(
        f"Gaussian mixture: D={args.dim}, K={args.components}, batch={args.batch}, float64; "
        f"Karras grid rho=7, sigma {SIGMA_MIN:.6g} .. {SIGMA_MAX:.6g}"
    )

    ode_steps = 600
    reference = mixture.ode_solution(x_start, SIGMA_MAX, steps=ode_steps)
    # sanity checks run on the first few start points only, to keep the run short
    xs, ref_s = x_start[:4], reference[:4]
    coarse = mixture.ode_solution(xs, SIGMA_MAX, steps=ode_steps // 2)
    print("\nSanity checks (first 4 start points)")
    print(
        f"  ODE reference (RK4, {ode_steps} steps) vs {ode_steps // 2} steps: RMSE {rmse(ref_s, coarse):.1e}, so the"
        f" reference is good to ~{rmse(ref_s, coarse) / 15:.0e} (data RMS {float(reference.pow(2).mean().sqrt()):.3f})"
    )

    kd = load_k_diffusion_sampling()
    ds = load_diffusers_schedulers()
    rows = unstatic_rows()
    rows += k_diffusion_rows(kd) if kd is not None else [("k-diffusion", "(all samplers)", None)]
    rows += diffusers_rows(ds) if ds is not None else [("diffusers", "(all schedulers)", None)]

    # --- the libraries solve the same problem: same grid, same algorithm -> same answer
    by_label = {(lib, label): solve for lib, label, solve in rows if solve is not None}
    if ds is not None:
        print("  diffusers Karras grids (10 steps) vs ours:")
        for line in diffusers_grid_check(ds):
            print(line)
    n_conv = 200
    plain_euler = by_label[("unstatic", "euler [plain]")](den, xs, n_conv)
    print(f"  unstatic euler [plain], {n_conv} steps: RMSE vs ODE {rmse(plain_euler, ref_s):.2e} (first order)")
    if kd is not None:
        out = by_label[("k-diffusion", "sample_euler")](den, xs, n_conv)
        print(
            f"  k-diffusion sample_euler, {n_conv} steps: RMSE vs ODE {rmse(out, ref_s):.2e};"
            f" vs unstatic euler [plain] {rmse(out, plain_euler):.1e}"
        )
        solve = by_label[("k-diffusion", "sample_dpmpp_2m_sde eta=0")]
        torch.manual_seed(1)
        first = solve(den, xs, 10)
        torch.manual_seed(2)
        same = bool(torch.equal(first, solve(den, xs, 10)))
        print(f"  k-diffusion sample_dpmpp_2m_sde eta=0 gives the same result under different seeds: {'yes' if same else 'NO'}")
    if ds is not None:
        out = by_label[("diffusers", "EulerDiscrete")](den, xs, n_conv)
        print(
            f"  diffusers EulerDiscrete, {n_conv} steps: RMSE vs ODE {rmse(out, ref_s):.2e};"
            f" vs unstatic euler [plain] {rmse(out, plain_euler):.1e}"
        )
        for n2 in (25, 100):
            ours = by_label[("unstatic", "dpmpp_2m [plain]")](den, xs, n2)
            out = by_label[("diffusers", "DPMSolverMultistep ++2M")](den, xs, n2)
            print(
                f"  diffusers DPMSolver++ 2M (VP frame), {n2} steps: RMSE vs ODE {rmse(out, ref_s):.2e};"
                f" vs unstatic dpmpp_2m [plain] {rmse(out, ours):.1e}"
            )
        print("  (diffusers steps in float32 internally, so agreement with the float64 libraries stops near 1e-7)")
    pairs = [
        ("euler [plain]", "k-diffusion", "sample_euler"),
        ("heun [plain]", "k-diffusion", "sample_heun"),
        ("dpm_2 [plain]", "k-diffusion", "sample_dpm_2"),
        ("lms [no final_step opt]", "k-diffusion", "sample_lms"),
        ("lms [plain]", "k-diffusion", "sample_lms"),
        ("dpmpp_2m [plain]", "k-diffusion", "sample_dpmpp_2m"),
        ("dpmpp_2m_sde eta=0", "k-diffusion", "sample_dpmpp_2m_sde eta=0"),
        ("dpmpp_3m_sde eta=0", "k-diffusion", "sample_dpmpp_3m_sde eta=0"),
        ("heun [plain]", "diffusers", "HeunDiscrete"),
        ("dpm_2 [plain]", "diffusers", "KDPM2Discrete"),
        ("lms [no final_step opt]", "diffusers", "LMSDiscrete"),
        ("lms [plain]", "diffusers", "LMSDiscrete"),
        ("dpmpp_2m [plain]", "diffusers", "DPMSolverMultistep ++2M"),
        ("unipc o2 bh2 [plain]", "diffusers", "UniPCMultistep bh2 o2"),
        ("unipc o3 bh2 [plain]", "diffusers", "UniPCMultistep bh2 o3"),
    ]
    parity = []
    for ours, lib, theirs in pairs:
        if ("unstatic", ours) in by_label and (lib, theirs) in by_label:
            a = by_label[("unstatic", ours)](den, xs, 10)
            b = by_label[(lib, theirs)](den, xs, 10)
            parity.append(f"{ours} ~ {theirs} {rmse(a, b):.0e}")
    print("  parity at 10 steps, RMSE between unstatic and the same algorithm elsewhere:")
    for k in range(0, len(parity), 3):
        print("    " + ";  ".join(parity[k : k + 3]))
    print(f"  [setup + sanity checks took {time.perf_counter() - started:.0f} s]")

    # --- the table
    results: dict[tuple[str, str], dict[int, tuple[float, int, int]]] = {}
    for lib, label, solve in rows:
        if solve is None:
            continue
        picks = steps_for_budgets(solve, args.dim)
        cell = {}
        done: dict[int, float] = {}
        for budget, (n, calls) in picks.items():
            if n not in done:
                counter = Counter(den)
                out = solve(counter, x_start, n)
                assert counter.calls == calls, (label, n, counter.calls, calls)
                done[n] = rmse(out, reference)
            cell[budget] = (done[n], n, calls)
        results[(lib, label)] = cell

    header = ["sampler (library)", *[f"NFE {b}" for b in BUDGETS]]
    table, steps_table = [], []
    for lib, label, solve in rows:
        name = f"{label} ({lib})"
        if solve is None:
            table.append([name, *["not installed"] * len(BUDGETS)])
            continue
        cell = results[(lib, label)]
        table.append([name, *[f"{cell[b][0]:.2e}" if b in cell else "-" for b in BUDGETS]])
        steps_table.append([name, *[f"{cell[b][1]}/{cell[b][2]}" if b in cell else "-" for b in BUDGETS]])
    print("\nRMSE vs exact probability-flow ODE solution (lower is better)")
    print(format_table(header, table))
    print("\nSteps / counted denoiser calls used for each budget")
    print(format_table(header, steps_table))

    print("\nBest per NFE budget (ratio = best reference RMSE / best unstatic RMSE; > 1 means unstatic is more accurate)")
    for budget in BUDGETS:
        best = {}
        for (lib, label), cell in results.items():
            if budget not in cell:
                continue
            group = "unstatic" if lib == "unstatic" else "reference"
            if group not in best or cell[budget][0] < best[group][1]:
                best[group] = (f"{label} ({lib})", cell[budget][0])
        if "unstatic" in best and "reference" in best:
            (u_name, u), (r_name, r) = best["unstatic"], best["reference"]
            print(f"  NFE {budget:>2}: {u_name} {u:.2e}  vs  {r_name} {r:.2e}  ratio {r / u:.2f}")
        elif "unstatic" in best:
            print(f"  NFE {budget:>2}: unstatic {best['unstatic'][0]} {best['unstatic'][1]:.2e}  (no reference library installed)")
    if ds is not None:
        print(
            "\nNot in the table: diffusers DEISMultistepScheduler. With use_karras_sigmas=True it ends its grid at"
            " sigma_min instead of 0 (final sigma repeated), so it does not solve to sigma = 0 on this grid."
        )
    print(f"\n(total time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
