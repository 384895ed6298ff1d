"""Network speed on this CPU: unstatic vs diffusers on identical weights, in one process.

For each case the diffusers model is built with random weights, saved with ``save_pretrained`` and loaded
into unstatic through the diffusers importers, so both run the same weights on the same inputs. Prints ms per
forward (median of interleaved repetitions), GFLOP/s, fraction of this machine's ceiling (the rate of a large
3x3 convolution, measured at the start of the run: 480 GFLOP/s fp32 and 946 bf16 on the 2-core AVX-512 machine
of shared/REFERENCES.md, 77 fp32 on the 2-core AVX2 EPYC of 2026-12) and unstatic's relative error against
diffusers fp32.

    .venv/bin/python -m benchmarks.networks [--budget SECONDS_PER_CASE] [--only NAME_PART] [--fp32-only]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from unstatic.networks import load_diffusers_unet, load_diffusers_vae

CEILING_GFLOPS = {"fp32": 480.0, "bf16": 946.0}  # replaced by measure_ceilings() at the start of a run


def measure_ceilings(modes: tuple[str, ...], budget: float = 2.0) -> dict[str, float]:
    """GFLOP/s of a 3x3 convolution big enough to run at oneDNN's peak (256 -> 256 channels, 32x32, batch 8):
    what the networks' convolutions could reach on this machine, per mode."""
    x, conv = torch.randn(8, 256, 32, 32).to(memory_format=torch.channels_last), torch.nn.Conv2d(256, 256, 3, padding=1)
    conv = conv.to(memory_format=torch.channels_last)
    gflop = 2 * 8 * 32 * 32 * 256 * 256 * 9 / 1e9
    rates = {}
    with torch.inference_mode():
        for mode in modes:
            model, inputs = (conv, x) if mode == "fp32" else (_to_bf16(conv), x.to(torch.bfloat16))
            rates[mode] = gflop / (_median_ms(lambda: model(inputs), budget) / 1e3)
    return rates


def small_conditional_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, block_out_channels=(64, 128, 256), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=384, attention_head_dim=8,
    )


def cifar10_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(  # the DDPM CIFAR-10 layout (google/ddpm-cifar10-32)
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None, norm_eps=1e-6,
        flip_sin_to_cos=False, freq_shift=1, resnet_time_scale_shift="default",
    )


def small_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(64, 128, 256), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=32,
    )


def _median_ms(fn, budget: float) -> float:
    fn()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget and len(times) < 50):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _interleaved_median_ms(fns: dict, budget: float, min_rounds: int = 5, max_rounds: int = 50) -> dict:
    """Median ms of each callable, timed in a fresh random order each round, so that load from other
    processes on this shared machine falls on all of them alike (sequential blocks gave ratios off by 20 %)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    start, rounds = time.perf_counter(), 0
    while rounds < min_rounds or (time.perf_counter() - start < budget and rounds < max_rounds):
        order = list(fns)
        random.Random(rounds).shuffle(order)
        for name in order:
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
        rounds += 1
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def _cases(tmp: Path):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cond = small_conditional_unet().eval()
    cond.save_pretrained(tmp / "cond")
    ours_cond = load_diffusers_unet(tmp / "cond")
    for batch in (1, 2):
        x, t, ctx = torch.randn(batch, 4, 32, 32, generator=gen), torch.full((batch,), 500.0), torch.randn(batch, 77, 384, generator=gen)
        yield (f"cond U-Net b{batch}", lambda m, x=x, t=t, c=ctx: m(x, t, encoder_hidden_states=c).sample,
               lambda m, x=x, t=t, c=ctx: m(x, t, c), cond, ours_cond, (x, t, ctx))
    cifar = cifar10_unet().eval()
    cifar.save_pretrained(tmp / "cifar")
    ours_cifar = load_diffusers_unet(tmp / "cifar")
    for batch in (1, 16):
        x, t = torch.randn(batch, 3, 32, 32, generator=gen), torch.full((batch,), 500.0)
        yield (f"CIFAR-10 U-Net b{batch}", lambda m, x=x, t=t: m(x, t).sample, lambda m, x=x, t=t: m(x, t), cifar, ours_cifar, (x, t))
    vae = small_vae().eval()
    vae.save_pretrained(tmp / "vae")
    ours_vae = load_diffusers_vae(tmp / "vae")
    image, latents = torch.randn(1, 3, 128, 128, generator=gen), torch.randn(1, 4, 32, 32, generator=gen)
    yield ("VAE encode 128²", lambda m, x=image: m.encode(x).latent_dist.mean, lambda m, x=image: m.encode(x).mean, vae, ours_vae, (image,))
    yield ("VAE decode 128²", lambda m, z=latents: m.decode(z).sample, lambda m, z=latents: m.decode(z), vae, ours_vae, (latents,))


def _to_bf16(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(torch.bfloat16).to(memory_format=torch.channels_last)


def _cpu_efficient_row(budget: float) -> None:
    """Our CPU-efficient default U-Net (UNetConfig.cpu_efficient) at the same input as the conditional case."""
    from unstatic.networks import UNet, UNetConfig

    model = UNet(UNetConfig.cpu_efficient()).eval()
    print("\nunstatic UNetConfig.cpu_efficient() (no attention at full resolution, 32-wide heads), 32x32x4, 77x384 context:")
    for batch in (1, 2):
        x, t, ctx = torch.randn(batch, 4, 32, 32), torch.full((batch,), 500.0), torch.randn(batch, 77, 384)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as counter:
                model(x, t, ctx)
            gflop = counter.get_total_flops() / 1e9
            fp32 = _median_ms(lambda: model(x, t, ctx), budget)
            bf16_model = _to_bf16(model)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = _median_ms(lambda: bf16_model(x, t, ctx), budget)
        print(f"  b{batch}: {gflop:.2f} GFLOP | fp32 {fp32:6.1f} ms, {gflop / fp32 * 1e3:4.0f} GFLOP/s, "
              f"{gflop / fp32 * 1e5 / CEILING_GFLOPS['fp32']:3.0f}% of ceiling | bf16 {bf16:6.1f} ms, "
              f"{gflop / bf16 * 1e3:4.0f} GFLOP/s, {gflop / bf16 * 1e5 / CEILING_GFLOPS['bf16']:3.0f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timed repetitions per model and mode (all four interleaved)")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this (e.g. 'cond')")
    parser.add_argument("--fp32-only", action="store_true", help="skip the bf16 mode (slow where the CPU has no bf16 instructions)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    measured = measure_ceilings(("fp32",) if args.fp32_only else ("fp32", "bf16"))
    CEILING_GFLOPS.update(measured)
    print("ceiling (3x3 conv, 256 -> 256 channels, 32x32, batch 8): "
          + ", ".join(f"{mode} {rate:.0f} GFLOP/s" for mode, rate in measured.items()), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for name, run_ref, run_ours, reference, ours, inputs in _cases(Path(tmp)):
            if args.only not in name:
                continue
            with FlopCounterMode(display=False) as counter:
                expected = run_ref(reference)
            gflop = counter.get_total_flops() / 1e9
            got = run_ours(ours)
            error = float((got.float() - expected).abs().max() / expected.abs().max())
            variants = [("diffusers fp32", reference, run_ref, "fp32"), ("unstatic fp32", ours, run_ours, "fp32")]
            error_bf16 = float("nan")
            if not args.fp32_only:
                ref_bf16, ours_bf16 = _to_bf16(reference), _to_bf16(ours)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    got_bf16 = run_ours(ours_bf16)
                error_bf16 = float((got_bf16.float() - expected).abs().max() / expected.abs().max())
                variants += [("diffusers bf16", ref_bf16, run_ref, "bf16"), ("unstatic bf16", ours_bf16, run_ours, "bf16")]
            runs = {}
            for label, model, runner, mode in variants:
                def call(model=model, runner=runner, mode=mode):
                    if mode == "bf16":
                        with torch.autocast("cpu", dtype=torch.bfloat16):
                            return runner(model)
                    return runner(model)

                runs[label] = (call, mode)
            medians = _interleaved_median_ms({label: call for label, (call, _) in runs.items()}, len(runs) * args.budget)
            timings = {label: (medians[label], mode) for label, (_, mode) in runs.items()}
            rows.append((name, gflop, timings, error, error_bf16))
            print(f"... {name} done", flush=True)

    print(f"\nms per forward (median), GFLOP/s and % of ceiling; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'case':22s} {'GFLOP':>6s} | {'diffusers fp32':>17s} | {'unstatic fp32':>17s} {'speed-up':>8s} | "
          f"{'diffusers bf16':>17s} | {'unstatic bf16':>17s} {'vs diff. fp32':>13s} | {'rel.err fp32':>12s} {'bf16':>8s}")
    for name, gflop, timings, error, error_bf16 in rows:
        cells = {label: f"{'-':>17s}" for label in ("diffusers bf16", "unstatic bf16")}
        for label, (ms, mode) in timings.items():
            rate = gflop / (ms / 1e3)
            cells[label] = f"{ms:7.1f} {rate:5.0f} {100 * rate / CEILING_GFLOPS[mode]:3.0f}%"
        speedup = timings["diffusers fp32"][0] / timings["unstatic fp32"][0]
        bf16_vs = timings["diffusers fp32"][0] / timings["unstatic bf16"][0] if "unstatic bf16" in timings else float("nan")
        print(f"{name:22s} {gflop:6.2f} | {cells['diffusers fp32']:>17s} | {cells['unstatic fp32']:>17s} {speedup:7.2f}x | "
              f"{cells['diffusers bf16']:>17s} | {cells['unstatic bf16']:>17s} {bf16_vs:12.2f}x | {error:12.1e} {error_bf16:8.1e}")
    if not args.only:
        _cpu_efficient_row(args.budget)
    print("\nTargets (issue 3): unstatic fp32 >= 1.3x diffusers on the conditional U-Net at b2 and never slower; "
          "bf16 mode >= 2x diffusers fp32 with rel. err <= 3e-2.")


if __name__ == "__main__":
    main()
