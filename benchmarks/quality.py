"""Prompt fidelity and Fréchet distance against NFE for several samplers: the speed/quality dial of a
text-to-image model of the shapes world.

    python -m benchmarks.quality --count 50 --samplers euler,heun,dpmpp_2m,unipc,dpmpp_2m_sde --steps 5,10,20,50

Every cell is :func:`unstatic.evaluation.report.evaluate_model` (what ``unstatic eval`` runs) on the same
prompts and seeds. NFE is counted, not taken from a formula: a forward hook on the model's network counts its
calls in each sampling run. With classifier-free guidance one call is one batched forward of the conditional
and the unconditional rows, counted as one NFE; the ``rows`` column gives the rows per image in each call
(2 with CFG, 1 without), so the network work per image is NFE x rows. Heun and DPM2 call the model twice per
step (once on the last step, to sigma = 0), so they cost about twice as much per step.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from unstatic.evaluation.report import EvaluationSettings, QualityReport, evaluate_model
from unstatic.evaluation.shapes_reader import ShapesReader
from unstatic.pipelines.txt2img import TextToImagePipeline


class CountingPipeline:
    """A :class:`TextToImagePipeline` that counts its sampling runs, its images, and its network's forward
    passes and their rows (a forward hook, so every call the samplers make is seen, whatever they are)."""

    def __init__(self, pipe: TextToImagePipeline) -> None:
        self.pipe, self.name = pipe, pipe.name
        self.runs = self.images = self.forwards = self.rows = 0
        self._hook = pipe.model.network.register_forward_hook(self._count)

    def _count(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.forwards += 1
        self.rows += output.shape[0]

    def __call__(self, prompt: list[str], **options: Any) -> list:
        results = self.pipe(prompt, **options)
        self.runs += 1
        self.images += len(results)
        return results

    def close(self) -> None:
        self._hook.remove()

    @property
    def nfe(self) -> float:
        """Network calls per sampling run: the same for every run at fixed settings."""
        return self.forwards / self.runs

    @property
    def rows_per_image(self) -> float:
        """Rows of one image in each call: 2 with classifier-free guidance (cond and uncond), 1 without."""
        return self.rows / (self.images * self.nfe)


@dataclass(frozen=True)
class Cell:
    sampler: str
    steps: int
    nfe: float
    rows_per_image: float
    report: QualityReport


def sweep(
    pipe: TextToImagePipeline, samplers: list[str], steps: list[int], base: EvaluationSettings,
    reader: ShapesReader | None = None,
) -> list[Cell]:
    """One evaluation per sampler and step count, with the network's calls counted."""
    # a 1-step pass first encodes every prompt (then cached) and warms the kernels, so the first cell's s/image
    # pays no more than the others
    evaluate_model(pipe, replace(base, steps=1), reader=reader)
    cells = []
    for sampler in samplers:
        for n in steps:
            counting = CountingPipeline(pipe)
            try:
                settings = replace(base, sampler=sampler, steps=n)
                report = evaluate_model(counting, settings, reader=reader)
            finally:
                counting.close()
            cells.append(Cell(sampler, n, counting.nfe, counting.rows_per_image, report))
            print(f"  {sampler} {n} steps: NFE {counting.nfe:g}, all {report.score('all').fraction:.1%}, "
                  f"FD {report.frechet:.1f}", flush=True)  # fmt: skip
    return cells


def format_cells(cells: list[Cell]) -> str:
    first = cells[0].report
    groups = [r.group for r in first.scores]
    diverse = first.diversity is not None
    header = f"{'sampler':14s} {'steps':>5s} {'NFE':>5s} {'rows':>4s} " + " ".join(f"{g:>10s}" for g in groups)
    header += f" {'FD':>8s}" + (f" {'div.':>5s}" if diverse else "") + f" {'s/img':>6s}"
    lines = [header]
    for c in cells:
        line = f"{c.sampler:14s} {c.steps:5d} {c.nfe:5g} {c.rows_per_image:4g} "
        line += " ".join(f"{c.report.score(g).fraction:10.1%}" for g in groups) + f" {c.report.frechet:8.1f}"
        line += (f" {c.report.diversity.ratio:5.2f}" if diverse else "") + f" {c.report.seconds_per_image:6.2f}"
        lines.append(line)
    perfect = " ".join(f"{first.score(g).ceiling:10.1%}" for g in groups)
    lines.append(f"{'perfect generator':31s} {perfect} {first.floor:8.1f}")
    n = first.score("all").total
    lines += [
        f"\n{first.model}: {n} images per cell, guidance {first.settings.guidance:g}, seed {first.settings.seed}.",
        "NFE: network calls per image, counted; rows: rows per image in each call (2: CFG batches cond and uncond).",
        "FD: Fréchet distance in reader features to renders of the same scenes.",
        "perfect generator: renders of scenes each caption describes equally well (the ceiling and the FD floor).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--count", type=int, default=50, help="prompts per group, per cell")
    parser.add_argument("--samplers", default="euler,heun,dpmpp_2m,unipc,dpmpp_2m_sde")
    parser.add_argument("--steps", default="5,10,20,50", help="comma-separated step counts")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--diversity", action="store_true", help="also measure diversity (16 prompts x 4 seeds per cell)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write every cell's report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from unstatic.models.bundled import bundled_model_folder

    try:
        folder = args.model or bundled_model_folder()
    except FileNotFoundError as error:
        parser.error(str(error))
    base = EvaluationSettings(count=args.count, guidance=args.guidance, seed=args.seed, batch=args.batch,
                              diversity_prompts=16 if args.diversity else 0)  # fmt: skip
    cells = sweep(TextToImagePipeline.from_folder(folder), args.samplers.split(","),
                  [int(s) for s in args.steps.split(",")], base)  # fmt: skip
    print(f"\n{format_cells(cells)}")
    if args.json:
        rows = [{"sampler": c.sampler, "steps": c.steps, "nfe": c.nfe, "rows_per_image": c.rows_per_image,
                 "report": c.report.to_dict()} for c in cells]  # fmt: skip
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
