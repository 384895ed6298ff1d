"""Prompt fidelity, Fréchet distance and diversity of a text-to-image model of the shapes world.

    python -m benchmarks.fidelity --model runs/shapes-text/model --count 100

Generates one image per evaluation prompt (new scenes from a world seed training never used) for the four
groups (single objects, two-object relations, held-out colour-shape combinations, paraphrased captions), reads
them back with the shapes evaluator and prints the matched fraction per group with a 95% Wilson interval; then
the Fréchet distance in the reader's feature space between the generated images and renders of the same
scenes, beside the real-vs-real floor; then diversity across seeds (4 seeds for 16 prompts).
"""

from __future__ import annotations

import argparse
import time

import torch

from unstatic.evaluation.fidelity import fidelity_report, prompt_set
from unstatic.evaluation.frechet import diversity, extract_features, frechet_distance, real_floor
from unstatic.evaluation.shapes_reader import default_reader_folder, load_reader, render_scenes
from unstatic.pipelines.txt2img import TextToImagePipeline
from unstatic.imaging import from_pil

GROUPS = ("single", "relation", "holdout", "paraphrase")
EVALUATION_SEED = 90_001  # a shapes-world seed no training config uses


def generate(pipe: TextToImagePipeline, captions: list[str], args, seed: int) -> torch.Tensor:
    images = []
    for start in range(0, len(captions), args.batch):
        results = pipe(captions[start:start + args.batch], num_inference_steps=args.steps, guidance_scale=args.guidance,
                       sampler=args.sampler, seed=seed + start)
        images += [from_pil(r.image) for r in results]
    return torch.stack(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--count", type=int, default=100, help="prompts per group")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--sampler", default="dpmpp_2m")
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = TextToImagePipeline.from_folder(args.model)
    reader = load_reader(default_reader_folder(32))
    started = time.perf_counter()
    captions, scenes, groups = [], [], []
    for group in GROUPS:
        for caption, scene in prompt_set(group, args.count, EVALUATION_SEED):
            captions.append(caption)
            scenes.append(scene)
            groups.append(group)
    images = generate(pipe, captions, args, seed=0)
    seconds = time.perf_counter() - started
    report = fidelity_report(reader, images, scenes, groups)
    print(f"\n{args.model}: {len(images)} images, {args.steps} steps {args.sampler}, guidance {args.guidance}, "
          f"{seconds / len(images):.2f} s/image")
    print(f"{'prompts':12s} {'matched':>8s} {'fraction':>9s}  95% interval")
    for group, row in report.items():
        print(f"{group:12s} {row['matched']:5d}/{row['total']:<3d} {row['fraction']:8.1%}  "
              f"[{row['low']:.1%}, {row['high']:.1%}]")
    renders = render_scenes(scenes, reader.config.resolution)
    fd = frechet_distance(extract_features(reader, images), extract_features(reader, renders))
    floor = real_floor(reader, len(images), EVALUATION_SEED, EVALUATION_SEED + 1)
    print(f"\nFréchet distance (reader features), generated vs renders of the same scenes: {fd:.1f}; "
          f"real-vs-real floor at n={len(images)}: {floor:.1f}")
    few = prompt_set("single", 16, EVALUATION_SEED + 2)
    seeds = 4
    batch = torch.stack([generate(pipe, [c] * seeds, args, seed=100) for c, _ in few])
    spread = diversity(reader, batch, few)
    print(f"diversity across {seeds} seeds (16 prompts): generated {spread['generated']:.3f}, "
          f"data {spread['reference']:.3f}, ratio {spread['ratio']:.2f}")


if __name__ == "__main__":
    main()
