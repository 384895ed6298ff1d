"""Stable Diffusion 1.5-shaped txt2img on this CPU, unstatic beside diffusers on identical random weights.

    .venv/bin/python -m benchmarks.sd_speed [--folder /tmp/sd15-random] [--size 512] [--steps 20] [--tile 0]
                                            [--dtypes fp32,bf16,bf16w]

A full-size SD 1.5 layout (U-Net 860M, VAE 84M, CLIP-L text encoder 123M parameters) with random weights is saved
once as a diffusers folder (the tokenizer is the tiny test one: token ids, not words, decide the cost). Each row
then runs in a fresh process, so peak RSS (``ru_maxrss``) is that run's alone: load the folder, one warm-up step,
then one image with classifier-free guidance (a batch of 2 per U-Net call) and Euler sampling, timing every step.
fp32 runs as stored; bf16 casts the weights and runs under CPU autocast; bf16w keeps the weights in bf16 and computes
in float32 (ours: ``networks.narrow_weights.compute_in_float32`` on the U-Net, VAE and CLIP, what ``load_any_model``
does by itself on a CPU without bf16 instructions; diffusers: loaded in float32, then ``enable_layerwise_casting``
on its U-Net and VAE; its CLIP stays float32). ``--tile N`` decodes the VAE in N-pixel
tiles (ours: ``decode_latents(tile_size=N / 8)``; diffusers: ``enable_tiling``), for 1024 px and up.
Prints seconds per step (median), total seconds and peak RSS per library and dtype.

Not a test: it takes minutes and all cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PROMPT = "a red circle above a blue square"
TOKENIZER = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tiny_clip"


def make_folder(folder: Path) -> None:
    """An SD 1.5-shaped diffusers pipeline with random weights (skipped when ``folder`` exists)."""
    if (folder / "model_index.json").is_file():
        return
    import diffusers
    import transformers

    from tests.networks.test_unet import SD15_CONFIG

    tokenizer = transformers.CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    unet = diffusers.UNet2DConditionModel(**{k: v for k, v in SD15_CONFIG.items() if not k.startswith("_")})
    vae = diffusers.AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 steps_offset=1)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                             safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)


def run_ours(folder: Path, dtype: torch.dtype, size: int, steps: int, tile: int, float32_compute: bool) -> list[float]:
    from unstatic.models.stable_diffusion import load_any_model
    from unstatic.models.stable_diffusion.load import model_networks
    from unstatic.networks.narrow_weights import compute_in_float32
    from unstatic.pipelines.generation import run_generation

    model = load_any_model(folder, dtype=dtype).model
    if float32_compute:
        for module in model_networks(model):
            compute_in_float32(module)
    if tile:
        decode = model.vae.decode_latents
        model.vae.decode_latents = lambda latents: decode(latents, tile_size=tile // 8)
    stamps: list[float] = []
    run_generation(model, None, PROMPT, num_inference_steps=1, sampler="euler", seed=0, height=size, width=size)  # warm-up
    stamps.append(time.perf_counter())
    run_generation(model, None, PROMPT, num_inference_steps=steps, sampler="euler", seed=0, height=size, width=size,
                   callback=lambda info: stamps.append(time.perf_counter()))
    return stamps


def run_diffusers(folder: Path, dtype: torch.dtype, size: int, steps: int, tile: int, float32_compute: bool) -> list[float]:
    import diffusers

    # layerwise casting as diffusers documents it: load in the compute dtype, then narrow the storage (a pipeline
    # loaded in bf16 hands the U-Net bf16 text embeddings, which its float32 layers refuse)
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32 if float32_compute else dtype,
                                                             local_files_only=True)
    if float32_compute:
        for model in (pipe.unet, pipe.vae):
            model.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if tile:  # the same tile size as ours (diffusers would take the VAE config's sample_size)
        pipe.vae.enable_tiling()
        pipe.vae.tile_sample_min_size, pipe.vae.tile_latent_min_size = tile, tile // 8
    stamps: list[float] = []

    def on_step(pipeline, index, timestep, kwargs):
        stamps.append(time.perf_counter())
        return kwargs

    pipe(PROMPT, num_inference_steps=1, height=size, width=size, output_type="pil")  # warm-up
    stamps.append(time.perf_counter())
    pipe(PROMPT, num_inference_steps=steps, height=size, width=size, callback_on_step_end=on_step)
    return stamps


def child(args: argparse.Namespace) -> None:
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16w": torch.bfloat16}[args.dtype]
    run = run_ours if args.library == "unstatic" else run_diffusers
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    start = time.perf_counter()
    with torch.inference_mode(), autocast:
        stamps = run(Path(args.folder), dtype, args.size, args.steps, args.tile, args.dtype == "bf16w")
    total = time.perf_counter() - start
    step_times = [b - a for a, b in itertools.pairwise(stamps)]
    print(json.dumps({"step": statistics.median(step_times), "total": total,
                      "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="/tmp/sd15-random")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tile", type=int, default=0)
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated rows to run (bf16 is slow where "
                        "the CPU has no bf16 instructions)")
    parser.add_argument("--library", choices=["unstatic", "diffusers"])  # set in the child processes
    parser.add_argument("--dtype", choices=["fp32", "bf16", "bf16w"])
    args = parser.parse_args()
    if args.library:
        child(args)
        return
    make_folder(Path(args.folder))
    print(f"SD 1.5 shape, random weights, {args.size}x{args.size}, {args.steps} Euler steps, CFG, "
          f"{torch.get_num_threads()} threads{f', VAE tiles of {args.tile} px' if args.tile else ''}")
    print(f"{'library':<10} {'dtype':<5} {'s/step':>8} {'total s':>8} {'peak RSS GiB':>13}")
    for dtype in args.dtypes.split(","):
        for library in ("unstatic", "diffusers"):
            command = [sys.executable, "-m", "benchmarks.sd_speed", "--library", library, "--dtype", dtype,
                       "--folder", args.folder, "--size", str(args.size), "--steps", str(args.steps), "--tile", str(args.tile)]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"{library:<10} {dtype:<5} {result['step']:>8.2f} {result['total']:>8.1f} {result['rss_gib']:>13.2f}")


if __name__ == "__main__":
    main()
