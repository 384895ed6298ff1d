"""`unstatic eval`: prompt fidelity, Fréchet distance and diversity of a shapes-world model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from unstatic.cli.app import main
from unstatic.cli.generate import generation_options


@main.command(name="eval", context_settings={"show_default": True})
@click.argument("model_dir", metavar="[MODEL]", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--count", default=100, type=click.IntRange(1, 100_000), help="Prompts per group (one image each).")
@click.option("--steps", default=20, type=click.IntRange(1, 1000))
@click.option("--guidance", default=4.0, type=float, help="Classifier-free guidance scale (1 = off).")
@generation_options("guidance_interval")
@click.option("--sampler", default="dpmpp_2m", help="Any sampler name or alias (see `unstatic samplers`).")
@click.option("--scheduler", default=None, help="Sigma spacing; default: the one the sampler name implies, else karras.")
@click.option("--seed", default=0, type=click.IntRange(0, 2**31), help="Seed of the first image (image i uses seed + i).")
@click.option("--batch", default=25, type=click.IntRange(1, 1024), help="Images per sampling call.")
@click.option("--diversity-prompts", default=16, type=click.IntRange(0, 10_000),
              help="Prompts whose images across 4 seeds measure diversity (0 = skip).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as JSON here.")
def evaluate(model_dir: Path | None, json_path: Path | None, **settings) -> None:
    """Score a text-to-image model of the shapes world (default: the bundled model) with the offline evaluator:
    the fraction of images matching their prompts per prompt group, the Fréchet distance in the evaluator's
    feature space beside what a perfect generator scores, and diversity across seeds."""
    from unstatic.evaluation.report import EvaluationSettings, evaluate_model
    from unstatic.models.bundled import bundled_model_folder
    from unstatic.pipelines.txt2img import TextToImagePipeline

    try:
        settings = EvaluationSettings(**settings)
        pipe = TextToImagePipeline.from_folder(model_dir or bundled_model_folder())
        with click.progressbar(length=settings.images, label="generating", file=sys.stderr) as bar:
            report = evaluate_model(pipe, settings, progress=bar.update)
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    click.echo(report.format_table())
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        click.echo(f"wrote {json_path}")
