"""End-to-end text-to-image latency on this CPU, and the per-step cost beside diffusers on identical weights.

    .venv/bin/python -m benchmarks.txt2img_speed [--model FOLDER] [--runs 5]

1. Per step: one classifier-free-guided step is one U-Net call on a batch of 2 (conditional and unconditional
   rows together). The bundled model's U-Net is rebuilt as a diffusers ``UNet2DConditionModel`` (parameter names
   are identical, so its state dict loads as is; the relative error of the outputs is printed), and both are timed
   interleaved in one process, fp32 and bf16 (weights cast to bf16, channels-last, autocast).
2. End to end: ``TextToImagePipeline`` making one image at 20 steps of DPM++ 2M with CFG 4, from the prompt to
   the PIL image: "cold" with a prompt not seen before (includes the MiniLM encoding), "warm" with a cached
   prompt. Medians of ``--runs`` runs; fp32, and bf16 as in (1).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from benchmarks.networks import _interleaved_median_ms, _to_bf16
from unstatic.models import bundled_model_folder, load_diffusion_model
from unstatic.networks import UNetConfig
from unstatic.pipelines.txt2img import TextToImagePipeline

PROMPT = "a red circle above a blue square"


def diffusers_twin(config: UNetConfig):
    """The same architecture as a diffusers ``UNet2DConditionModel``. diffusers reads ``attention_head_dim`` as the
    number of heads of each level (its long-standing naming quirk), so pass heads = channels / head width."""
    from diffusers import UNet2DConditionModel

    heads = tuple(config.attention_shape(level, "transformer")[0] for level in range(config.num_levels))
    return UNet2DConditionModel(
        sample_size=config.sample_size, in_channels=config.in_channels, out_channels=config.out_channels,
        block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
        down_block_types=config.down_block_types, up_block_types=config.up_block_types,
        mid_block_type=config.mid_block_type, cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=heads, use_linear_projection=config.use_linear_projection,
        norm_num_groups=config.norm_num_groups, flip_sin_to_cos=config.flip_sin_to_cos, freq_shift=config.freq_shift,
    ).eval()


def per_step(network, max_length: int, budget: float) -> None:
    twin = diffusers_twin(network.config)
    twin.load_state_dict(network.state_dict(), strict=True)
    size = network.config.sample_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, network.config.in_channels, size, size, generator=generator)
    t, context = torch.full((2,), 0.25), torch.randn(2, max_length, network.config.cross_attention_dim, generator=generator)
    with torch.inference_mode():
        expected = twin(x, t, encoder_hidden_states=context).sample
        error = float((network(x, t, context) - expected).abs().max() / expected.abs().max())
        ours_bf16, twin_bf16 = _to_bf16(network), _to_bf16(twin)

        def bf16(fn):
            def call():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return fn()
            return call

        medians = _interleaved_median_ms({
            "diffusers fp32": lambda: twin(x, t, encoder_hidden_states=context).sample,
            "unstatic fp32": lambda: network(x, t, context),
            "diffusers bf16": bf16(lambda: twin_bf16(x, t, encoder_hidden_states=context).sample),
            "unstatic bf16": bf16(lambda: ours_bf16(x, t, context)),
        }, budget)
    print(f"\nOne guided step = one U-Net call at batch 2, {size}x{size}, context {max_length}x{network.config.cross_attention_dim}"
          f" (relative error vs diffusers fp32: {error:.1e})")
    print(f"{'':16s} {'ms/step':>8s} {'vs diffusers fp32':>18s}")
    for name, ms in medians.items():
        print(f"{name:16s} {ms:8.1f} {medians['diffusers fp32'] / ms:17.2f}x")


def end_to_end(folder, runs: int) -> None:
    print(f"\nOne image, 20 steps DPM++ 2M, CFG 4 (median of {runs}; cold = new prompt, includes text encoding)")
    print(f"{'':6s} {'cold s':>7s} {'warm s':>7s} {'s/step warm':>12s}")
    for mode in ("fp32", "bf16"):
        model = load_diffusion_model(folder)
        if mode == "bf16":
            model = type(model)(_to_bf16(model.network), model.spec)
        pipe = TextToImagePipeline(model)
        context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mode == "bf16" else contextlib.nullcontext
        with torch.inference_mode(), context():
            pipe(PROMPT, seed=0)  # load the text encoder, warm the kernels
        cold, warm = [], []
        for run in range(runs):
            for times, prompt in ((cold, f"a small red circle in the top left corner, take {run}"), (warm, PROMPT)):
                start = time.perf_counter()
                with torch.inference_mode(), context():
                    pipe(prompt, seed=run, num_inference_steps=20, guidance_scale=4.0)
                times.append(time.perf_counter() - start)
        cold_s, warm_s = statistics.median(cold), statistics.median(warm)
        print(f"{mode:6s} {cold_s:7.3f} {warm_s:7.3f} {warm_s / 20 * 1e3:10.1f}ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder (default: the bundled model)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of interleaved per-step timing")
    args = parser.parse_args()
    torch.set_num_threads(2)
    folder = args.model or bundled_model_folder()
    model = load_diffusion_model(folder)
    print(f"model {folder}: {sum(p.numel() for p in model.network.parameters()) / 1e6:.2f}M parameters; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    per_step(model.network, model.spec.text_max_length, args.budget)
    end_to_end(folder, args.runs)


if __name__ == "__main__":
    main()
