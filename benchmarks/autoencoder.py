"""Reconstruction quality of an autoencoder (VAE) folder on shapes scenes it never saw in training: PSNR (dB) and
SSIM of posterior-mean reconstructions at full resolution, beside a baseline of the same budget of numbers:
bicubic down-sampling to the latent grid and back up (``latent_channels / 3`` times fewer numbers than the VAE's
latent when the latent has more channels than the image).

    python -m benchmarks.autoencoder runs/shapes-vae/model --count 256

Also prints the latent statistics diffusion cares about: the std of the scaled latents (about 1 when the exported
``scaling_factor`` fits these scenes) and seconds per image to encode and to decode (2 threads, batch 16).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from unstatic.data.shapes.dataset import ShapesDataset
from unstatic.networks.weights import load_model
from unstatic.training.autoencoder import reconstruct, reconstruction_quality

UNSEEN_WORLD = 90001  # the world seed evaluation uses; training worlds use seed 0


def bicubic_round_trip(images: torch.Tensor, factor: int) -> torch.Tensor:
    small = F.interpolate(images, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, size=images.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)


def timed(function, *args, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vae", help="a VAE folder (config.json + model.safetensors), e.g. runs/shapes-vae/model")
    parser.add_argument("--count", type=int, default=256, help="scenes to reconstruct")
    parser.add_argument("--resolution", type=int, default=None, help="image side (default: the VAE's sample_size)")
    parser.add_argument("--max-objects", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    vae = load_model(args.vae).eval()
    cfg = vae.config
    side = args.resolution or (cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0])
    data = ShapesDataset(resolution=side, length=args.count, seed=UNSEEN_WORLD, max_objects=args.max_objects, label=None)
    images = torch.stack([data[i]["image"] for i in range(args.count)])
    factor = cfg.downsampling_factor
    with torch.no_grad():
        latents = torch.cat([vae.encode_latents(batch) for batch in images.split(32)])
        ours = reconstruction_quality(images, reconstruct(vae, images))
    baseline = reconstruction_quality(images, bicubic_round_trip(images, factor))
    batch = images[:16]
    with torch.no_grad():
        encode_s = timed(vae.encode_latents, batch) / len(batch)
        decode_s = timed(vae.decode_latents, latents[:16]) / len(batch)
    numbers = cfg.latent_channels * (side // factor) ** 2
    print(f"{args.count} unseen shapes scenes at {side}x{side}; latent {cfg.latent_channels}x{side // factor}x{side // factor} "
          f"({numbers} numbers for {3 * side * side} pixel values, {3 * side * side / numbers:.0f}x fewer)")
    print(f"{'reconstruction':34} {'PSNR dB':>8} {'SSIM':>7}")
    print(f"{'VAE (posterior mean)':34} {ours['psnr']:8.2f} {ours['ssim']:7.4f}")
    print(f"{f'bicubic to {side // factor}x{side // factor}x3 and back':34} {baseline['psnr']:8.2f} {baseline['ssim']:7.4f}")
    print(f"scaled latents: std {latents.std().item():.3f}, mean {latents.mean().item():+.3f} (scaling_factor {cfg.scaling_factor:.4f})")
    print(f"seconds per image (batch 16, 2 threads): encode {encode_s:.4f}, decode {decode_s:.4f}")


if __name__ == "__main__":
    main()
