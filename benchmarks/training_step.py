"""Training-step throughput on this CPU: unstatic's U-Net vs diffusers' ``UNet2DModel`` on identical weights.

Both models run the same loop (issue 4): DDPM eps-prediction, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``
with the linear beta schedule, MSE between the network output and ``eps`` (Ho et al. 2020, Algorithm 1, Eq. 14),
``backward``, an AdamW step, ``zero_grad(set_to_none=True)``. fp32, and bf16 autocast (CPU) with fp32 master
weights. The diffusers model is built with random weights, saved with ``save_pretrained`` and loaded into
unstatic through ``load_diffusers_unet``. Each model gets its own AdamW; both see the same batches.

Before timing, a parity check runs one step's forward and backward on the same batch in both models (fp32, then
bf16) and prints the loss difference, the largest gradient difference relative to the largest gradient entry,
and the worst single tensor (its difference relative to its own largest entry, or to 1e-3 of the overall
largest for gradients that are zero in exact arithmetic).
Then models and modes are timed in a fresh random order each round; the table shows the median images/s and
unstatic's ratio to diffusers.

    .venv/bin/python -m benchmarks.training_step [--batch 32] [--rounds 7] [--steps 3] [--attention default|none]
                                                 [--modes fp32,bf16] [--layouts channels-last,nchw]

``--layouts`` times unstatic's network in each layout named (``nchw``: weights and activations in NCHW, as
diffusers'), each its own copy of the same weights, in the same rounds.

On a CPU without bf16 instructions (AVX2 only) bf16 is emulated, about 8x slower than fp32 in both libraries:
``--modes fp32`` skips those rows there.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from unstatic.networks import load_diffusers_unet

# diffusers' UNet2DModel default block types (4 levels), cut to our 3 levels: attention at the two lower ones.
BLOCK_TYPES = {
    "default": (("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"), ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
    "none": (("DownBlock2D",) * 3, ("UpBlock2D",) * 3),
}
LAYOUTS = {"channels-last": torch.channels_last, "nchw": torch.contiguous_format}


def diffusers_unet(attention: str):
    """diffusers ``UNet2DModel`` (32, 64, 128), 2 layers per block, 32x32 RGB; its other options at their defaults."""
    from diffusers import UNet2DModel

    down, up = BLOCK_TYPES[attention]
    return UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 128), layers_per_block=2,
        down_block_types=down, up_block_types=up,
    )


def alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """DDPM's linear betas from 1e-4 to 0.02 (Ho et al. 2020, Sec. 4), cumulative product of ``1 - beta``."""
    return torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, steps, dtype=torch.float64), 0).float()


def make_batch(x0: torch.Tensor, abar: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, eps)`` for clean images ``x0`` (Ho et al. 2020, Algorithm 1)."""
    t = torch.randint(0, len(abar), (x0.shape[0],), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    a = abar[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps, t, eps


def loss_of(forward: Callable, model: torch.nn.Module, batch, bf16: bool) -> torch.Tensor:
    x_t, t, eps = batch
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        prediction = forward(model, x_t, t)
    return F.mse_loss(prediction.float(), eps)


def train_step(forward: Callable, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, bf16: bool) -> float:
    loss = loss_of(forward, model, batch, bf16)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def parity(models: dict, forwards: dict, batch) -> None:
    """One forward + backward in each model on the same batch (fp32, then bf16): loss and gradient agreement."""
    for bf16 in (False, True):
        grads, losses = {}, {}
        for name, model in models.items():
            model.zero_grad(set_to_none=True)
            loss = loss_of(forwards[name], model, batch, bf16)
            loss.backward()
            losses[name] = loss.item()
            grads[name] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
            model.zero_grad(set_to_none=True)
        ref = grads["diffusers"]
        for name in (n for n in models if n != "diffusers"):
            ours = grads[name]
            missing = sorted(set(ref) ^ set(ours))
            shared = sorted(set(ref) & set(ours))
            scale = max(float(ref[n].abs().max()) for n in shared)
            # Gradients that are zero in exact arithmetic (key biases under softmax, a bias right before a
            # per-channel GroupNorm) are pure rounding noise; judge every tensor against at least 1e-3 of the largest.
            worst, worst_name = 0.0, ""
            for n in shared:
                err = float((ours[n] - ref[n]).abs().max()) / max(float(ref[n].abs().max()), 1e-3 * scale)
                if err > worst:
                    worst, worst_name = err, n
            overall = max(float((ours[n] - ref[n]).abs().max()) for n in shared) / scale
            loss_err = abs(losses[name] - losses["diffusers"]) / abs(losses["diffusers"])
            mode = "bf16" if bf16 else "fp32"
            print(f"parity {mode}, {name}: loss diffusers {losses['diffusers']:.6f} ours {losses[name]:.6f} "
                  f"(rel. diff {loss_err:.1e}); grads: max |diff| / max |grad| {overall:.1e}, worst tensor {worst:.1e} "
                  f"({worst_name}); {len(shared)} compared" + (f"; names in only one model: {missing[:4]}" if missing else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (median over them)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed measurement")
    parser.add_argument("--attention", choices=sorted(BLOCK_TYPES), default="default", help="block types (see BLOCK_TYPES)")
    parser.add_argument("--layouts", default="channels-last", help="comma-separated layouts to run unstatic in: "
                        "channels-last (its default), nchw")
    parser.add_argument("--modes", default="fp32,bf16", help="comma-separated modes to time (bf16 is slow where the CPU "
                        "has no bf16 instructions)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    reference = diffusers_unet(args.attention).train()
    layouts = args.layouts.split(",")
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layouts {sorted(unknown)}; choose from {sorted(LAYOUTS)}")
    models = {"diffusers": reference}
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(Path(tmp) / "unet")
        for layout in layouts:  # the activations follow the conv weights' layout (unstatic.networks.memory_format)
            models[f"unstatic {layout}"] = load_diffusers_unet(Path(tmp) / "unet").train().to(memory_format=LAYOUTS[layout])
    forwards = {name: (lambda m, x, t: m(x, t).sample) if name == "diffusers" else (lambda m, x, t: m(x, t))
                for name in models}
    gen = torch.Generator().manual_seed(0)
    abar = alphas_cumprod()
    x0 = torch.randn(args.batch, 3, 32, 32, generator=gen).clamp(-1, 1)
    parity(models, forwards, make_batch(x0, abar, gen))

    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    modes = {"fp32": False, "bf16": True}
    chosen = [modes[m] for m in args.modes.split(",")]
    runs = [(name, bf16) for bf16 in chosen for name in models]
    for name, bf16 in runs:  # warm-up: allocator, oneDNN primitive caches, AdamW state
        train_step(forwards[name], models[name], optimizers[name], make_batch(x0, abar, gen), bf16)
    rates: dict[tuple[str, bool], list[float]] = {run: [] for run in runs}
    for r in range(args.rounds):
        random.Random(r).shuffle(runs)
        for name, bf16 in runs:
            batches = [make_batch(x0, abar, gen) for _ in range(args.steps)]
            start = time.perf_counter()
            for batch in batches:
                train_step(forwards[name], models[name], optimizers[name], batch, bf16)
            rates[(name, bf16)].append(args.steps * args.batch / (time.perf_counter() - start))
        print(f"... round {r + 1}/{args.rounds}", flush=True)

    print(f"\nTraining step, UNet2DModel (32, 64, 128) attention={args.attention}, 32x32x3, batch {args.batch}, AdamW; "
          f"median images/s over {args.rounds} rounds of {args.steps} steps; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'mode':6s} | {'diffusers':>10s} | " + " | ".join(f"{'unstatic ' + layout:>23s} | {'ratio':>6s}" for layout in layouts))
    for mode, bf16 in ((m, b) for m, b in modes.items() if b in chosen):
        ref = statistics.median(rates[("diffusers", bf16)])
        cells = []
        for layout in layouts:
            got = statistics.median(rates[(f"unstatic {layout}", bf16)])
            cells.append(f"{got:23.1f} | {got / ref:5.2f}x")
        print(f"{mode:6s} | {ref:10.1f} | " + " | ".join(cells))
    print("\nTarget (issue 4): unstatic >= 1.3x diffusers at equal config.")


if __name__ == "__main__":
    main()
