"""The shapes evaluator's own accuracy: how well the reader reads, and what its Fréchet distance says.

Prints, for each committed reader resolution:

* per-head accuracy on fresh renders (a world seed training never used), clean and with generator-like
  corruption (noise std 0.1 plus a slight blur), and prompt fidelity of clean renders per prompt group (a perfect
  generator's score, so anything below 100 % is the instrument's own error);
* Fréchet distances at equal sample size: renders vs renders of another seed (the real-vs-real floor), vs
  blurred renders (3x3 box blur), vs noisy renders, vs uniform noise;
* reading throughput (images/s, median of repeats) on the threads given.

Run:  .venv/bin/python -m benchmarks.evaluator            (about a minute on an idle 2-core machine)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from unstatic.evaluation.fidelity import GROUPS, fidelity_report, prompt_set
from unstatic.evaluation.frechet import extract_features, frechet_distance, real_floor, world_renders
from unstatic.evaluation.shapes_reader import WEIGHTS_DIR, load_reader, render_scenes
from unstatic.evaluation.train_reader import head_accuracy, validation_set

BENCHMARK_SEED = 5_550_001


def corrupt(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Noise of std 0.1 (~13 8-bit levels) after a 3x3 box blur: a rough stand-in for generator artefacts."""
    blurred = F.avg_pool2d(F.pad(images, (1,) * 4, mode="replicate"), 3, stride=1)
    return (blurred + 0.1 * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="images per accuracy and Fréchet set")
    parser.add_argument("--prompts", type=int, default=250, help="prompts per fidelity group")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    for folder in sorted(WEIGHTS_DIR.glob("shapes_reader_*")):
        reader = load_reader(folder)
        r = reader.config.resolution
        params = sum(p.numel() for p in reader.parameters())
        print(f"\n== {folder.name}: resolution {r}, {params:,} parameters ==")

        images, targets = validation_set(args.count, r, seed=BENCHMARK_SEED)
        rows = {"clean": head_accuracy(reader, images, targets),
                "blur+noise": head_accuracy(reader, corrupt(images, generator), targets)}  # fmt: skip
        heads = list(rows["clean"])
        print(f"{'accuracy (%)':<14}" + "".join(f"{h:>11}" for h in heads))
        for name, accuracy in rows.items():
            print(f"{name:<14}" + "".join(f"{100 * accuracy[h]:>11.2f}" for h in heads))

        print(f"\n{'fidelity of renders':<22}{'matched':>9}{'%':>9}{'95% CI':>18}")
        for kind in GROUPS:
            scenes = [s for _, s in prompt_set(kind, args.prompts, seed=BENCHMARK_SEED)]
            entry = fidelity_report(reader, render_scenes(scenes, r), scenes, [kind] * len(scenes))[kind]
            ci = f"{100 * entry['low']:.1f}-{100 * entry['high']:.1f}"
            print(f"{kind:<22}{entry['matched']:>5}/{entry['total']:<3}{100 * entry['fraction']:>9.1f}{ci:>18}")

        renders, _ = world_renders(args.count, BENCHMARK_SEED + 1, r)
        base = extract_features(reader, renders)
        # corrupt renders of the floor's other world, so every row compares different scenes, as the floor does
        others, _ = world_renders(args.count, BENCHMARK_SEED + 2, r)
        noise = torch.rand(renders.shape, generator=generator) * 2 - 1
        blurred = F.avg_pool2d(F.pad(others, (1,) * 4, mode="replicate"), 3, stride=1)
        noisy = (others + 0.1 * torch.randn(others.shape, generator=generator)).clamp(-1, 1)
        print(f"\nFréchet distance, {args.count} vs {args.count} images")
        print(f"  renders vs renders (real floor) {real_floor(reader, args.count, BENCHMARK_SEED + 1, BENCHMARK_SEED + 2):>10.3f}")
        for name, other in (("blurred renders", blurred), ("noisy renders (0.1)", noisy), ("uniform noise", noise)):
            print(f"  renders vs {name:<20}{frechet_distance(base, extract_features(reader, other)):>10.3f}")

        batch = renders[:512]
        times = []
        for _ in range(7):
            start = time.perf_counter()
            extract_features(reader, batch)
            times.append(time.perf_counter() - start)
        print(f"\nreading speed: {len(batch) / statistics.median(times):.0f} images/s on {args.threads} threads")


if __name__ == "__main__":
    main()
