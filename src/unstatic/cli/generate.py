"""`unstatic generate` and `unstatic sample`: images from a model folder through the txt2img pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from unstatic.cli.app import main

_GENERATION_OPTIONS = [
    click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                 help="A model folder (e.g. the model/ folder a training run writes)."),
    click.option("--sampler", default="dpmpp_2m", help="Any sampler name or alias (see `unstatic samplers`)."),
    click.option("--scheduler", default=None, help="Sigma spacing; default: the one the sampler name implies, else karras."),
    click.option("--steps", default=20, type=click.IntRange(1, 1000)),
    click.option("--seed", default=None, type=click.IntRange(0, 2**32 - 1), help="Seed of the first image (image i uses seed + i); default: random."),
    click.option("--guidance", "guidance_scale", default=5.0, type=float, help="Classifier-free guidance scale (1 = off)."),
    click.option("--negative", "negative_prompt", default="", help="Negative prompt (text models)."),
]


def _generation_options(command):
    for option in reversed(_GENERATION_OPTIONS):
        command = option(command)
    return command


def _generate(model_dir: Path, prompts: list[str], images: int, steps: int, **options):
    from unstatic.pipelines.txt2img import TextToImagePipeline

    pipe = TextToImagePipeline.from_folder(model_dir)
    with click.progressbar(length=steps, label="sampling") as bar:
        return pipe(prompts, num_images=images, num_inference_steps=steps, callback=lambda info: bar.update(1), **options)


@main.command(context_settings={"show_default": True})
@click.argument("prompt", default="")
@click.option("--images", default=1, type=click.IntRange(1, 256), help="Images per prompt.")
@click.option("--out", default="unstatic.png", type=click.Path(dir_okay=False, path_type=Path),
              help="Output PNG; with several images, -1, -2, ... are added before the suffix.")
@_generation_options
def generate(prompt: str, images: int, out: Path, model_dir: Path, steps: int, **options) -> None:
    """Generate images from a prompt (a class name for class models, nothing for unconditional ones); each PNG
    carries its parameters as A1111 writes them."""
    try:
        results = _generate(model_dir, [prompt], images, steps, **options)
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    for i, result in enumerate(results):
        path = out if len(results) == 1 else out.with_name(f"{out.stem}-{i + 1}{out.suffix}")
        result.save(path)
        click.echo(f"wrote {path} (seed {result.seed})")


@main.command(context_settings={"show_default": True})
@click.option("--label", "labels", multiple=True, help="Class name or number (repeatable; each gets a row); text models: a prompt.")
@click.option("--images", default=8, type=click.IntRange(1, 256), help="Images per label (or in all, for unconditional models).")
@click.option("--out", default="samples.png", type=click.Path(dir_okay=False, path_type=Path))
@_generation_options
def sample(labels: tuple[str, ...], images: int, out: Path, model_dir: Path, steps: int, **options) -> None:
    """Sample a grid of images from a model folder: one row per label, or a square grid."""
    from unstatic.grids import image_grid
    from unstatic.imaging import from_pil

    try:
        results = _generate(model_dir, list(labels) or [""], images, steps, **options)
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid([from_pil(r.image) for r in results], nrow=images if labels else None,
                      captions=[r.prompt for r in results] if labels else None)
    grid.save(out)
    click.echo(f"wrote {out} ({len(results)} images, seeds {results[0].seed}..{results[-1].seed})")
