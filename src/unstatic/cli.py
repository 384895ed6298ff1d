"""The ``unstatic`` command line: parse, call a pipeline function, report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from unstatic.core.spacings import SPACINGS
from unstatic.sampling import SAMPLERS


@click.group()
@click.version_option(package_name="unstatic")
def main() -> None:
    """unstatic: generate images by removing noise step by step."""


@main.command()
@click.option("--sampler", default="dpmpp_2m", show_default=True, help="Any sampler name or alias (see `unstatic samplers`).")
@click.option("--scheduler", default=None, help="Sigma spacing (karras, exponential, ...); default: the one the sampler name implies, else karras.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the first image; image i uses seed + i.")
@click.option("--images", default=6, show_default=True, type=click.IntRange(1, 64))
@click.option("--out", default="demo.png", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
def demo(sampler: str, scheduler: str | None, steps: int, seed: int, images: int, out: Path) -> None:
    """Sample pictures from the built-in exact model and write a PNG of the reverse process."""
    from unstatic.pipelines.analytic_demo import run_demo

    try:
        with click.progressbar(length=steps, label="sampling") as bar:
            result = run_demo(sampler, scheduler, steps, seed, images, progress=lambda step, total: bar.update(1))
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    out.parent.mkdir(parents=True, exist_ok=True)
    result.image.save(out)
    click.echo(f"wrote {out} ({result.sampler}, {result.scheduler}, {result.steps} steps, seeds {result.seeds[0]}..{result.seeds[-1]})")


@main.command()
def samplers() -> None:
    """List samplers (with the names A1111 shows) and schedulers."""
    for info in SAMPLERS.values():
        kind = "stochastic" if info.stochastic else "deterministic"
        click.echo(f"{info.name:20s} {info.display_name:14s} {kind:13s} default scheduler: {info.default_scheduler}")
    click.echo("schedulers: " + ", ".join(sorted(SPACINGS)))


@main.command(context_settings={"show_default": True})
@click.argument("config_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set optim.lr=1e-4 --set data.name=digits (repeatable).")
@click.option("--out", "output_dir", default=None, help="Output folder (same as --set output_dir=...).")
@click.option("--steps", default=None, type=click.IntRange(1), help="Total optimizer steps (same as --set steps=N).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config_file: Path | None, overrides: tuple[str, ...], output_dir: str | None, steps: int | None,
          quiet: bool) -> None:
    """Train a diffusion model from a TOML config (and/or --set overrides); resumes from the newest
    checkpoint in the output folder (use a new --out to start over). Works the same under
    `torchrun --nproc_per_node N`; Ctrl-C saves a checkpoint and exits."""
    from unstatic.training.config import load_config
    from unstatic.training.trainer import TrainingError
    from unstatic.training.trainer import train as run_training

    try:
        config = load_config(config_file, overrides)
        config = dataclasses.replace(config, output_dir=output_dir or config.output_dir, steps=steps or config.steps)
        result = run_training(config, progress=not quiet)
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    except TrainingError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{result.reason.replace('_', ' ')} at step {result.step}; model: {result.model_dir}; checkpoint: {result.checkpoint}")


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


if __name__ == "__main__":
    main()
