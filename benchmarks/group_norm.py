"""GroupNorm + SiLU on this CPU: our kernel (``networks/group_norm_kernel.c``) against PyTorch's GroupNorm and SiLU
on channels-last and on NCHW maps, forward (inference) and forward + backward (training).

For each map shape the three paths run interleaved in a fresh random order per round; the table shows median
milliseconds, and each path's largest difference from float64 (relative to the largest output entry).

    .venv/bin/python -m benchmarks.group_norm [--rounds 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from unstatic.networks.cpu_kernel import native_library
from unstatic.networks.group_norm import GroupNorm

# (batch, channels, height, width): training maps of UNet2DModel (32, 64, 128) at batch 32, the small conditional
# U-Net's at batch 2, an SD 1.5 U-Net map and an SD VAE decoder map at 512 px
SHAPES = [(32, 32, 32, 32), (32, 64, 16, 16), (32, 128, 8, 8), (2, 64, 32, 32), (2, 320, 64, 64), (1, 128, 256, 256)]
GROUPS = 32


def paths(norm: GroupNorm):
    """name -> (layout, function of x): silu(groupnorm(x))."""
    def pytorch(x):
        return F.silu(F.group_norm(x, GROUPS, norm.weight, norm.bias, norm.eps))

    return {
        "unstatic kernel": (torch.channels_last, norm.with_silu),
        "PyTorch channels-last": (torch.channels_last, pytorch),
        "PyTorch NCHW": (torch.contiguous_format, pytorch),
    }


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if native_library() is None:
        raise SystemExit("the C kernels are not built here (no compiler, or UNSTATIC_NATIVE_KERNELS=0)")
    print(f"GroupNorm ({GROUPS} groups) + SiLU, float32, median ms over {args.rounds} rounds; torch {torch.__version__}, "
          f"{args.threads} threads")
    print(f"{'shape':>20} | {'path':<22} | {'forward':>8} | {'fwd + bwd':>9} | {'rel. err':>8}")
    for shape in SHAPES:
        torch.manual_seed(0)
        norm = GroupNorm(GROUPS, shape[1])
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
        x = torch.randn(shape) * 2 + 1
        grad = torch.randn(shape)
        with torch.no_grad():
            exact = F.silu(F.group_norm(x.double(), GROUPS, norm.weight.double(), norm.bias.double(), norm.eps))
        cases = paths(norm)
        inputs = {name: x.contiguous(memory_format=layout) for name, (layout, _) in cases.items()}
        grads = {name: grad.contiguous(memory_format=layout) for name, (layout, _) in cases.items()}
        train = shape[0] > 2  # the inference shapes are timed forward only
        times = {name: ([], []) for name in cases}
        errors = {}
        for r in range(args.rounds):
            order = list(cases)
            random.Random(r).shuffle(order)
            for name in order:
                function = cases[name][1]
                with torch.no_grad():
                    times[name][0].append(timed(lambda: function(inputs[name])))
                if train:
                    leaf = inputs[name].detach().requires_grad_()
                    times[name][1].append(timed(lambda: function(leaf).backward(grads[name])))
        for name in cases:
            with torch.no_grad():
                out = cases[name][1](inputs[name]).double()
            errors[name] = float((out - exact).abs().max() / exact.abs().max())
            forward = statistics.median(times[name][0])
            both = f"{statistics.median(times[name][1]):9.2f}" if train else f"{'-':>9}"
            print(f"{str(shape):>20} | {name:<22} | {forward:8.2f} | {both} | {errors[name]:8.1e}")


if __name__ == "__main__":
    main()
