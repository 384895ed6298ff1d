"""Prompt fidelity, Fréchet distance and diversity of a text-to-image model of the shapes world.

    python -m benchmarks.fidelity --model runs/shapes-text/model --count 100

The same measurement as ``unstatic eval`` (:func:`unstatic.evaluation.report.evaluate_model`): one image per
evaluation prompt (new scenes from a world seed training never used) for the four groups (single objects,
two-object relations, held-out colour-shape combinations, paraphrased captions), the matched fraction per group
with a 95% Wilson interval beside a perfect generator's, the Fréchet distance in the reader's feature space
against renders of the same scenes beside a perfect generator's (the floor), and diversity across 4 seeds for 16
prompts.
"""

from __future__ import annotations

import argparse

import torch

from unstatic.evaluation.report import EvaluationSettings, evaluate_model
from unstatic.pipelines.txt2img import TextToImagePipeline


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
    settings = EvaluationSettings(count=args.count, steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                                  batch=args.batch)  # fmt: skip
    report = evaluate_model(TextToImagePipeline.from_folder(args.model), settings)
    print(f"\n{report.format_table()}")


if __name__ == "__main__":
    main()
