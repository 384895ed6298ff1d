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


@main.command(context_settings={"show_default": True})
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", default="samples.png", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--images", default=16, type=click.IntRange(1, 256))
@click.option("--sampler", default="dpmpp_2m", help="Any sampler name or alias (see `unstatic samplers`).")
@click.option("--scheduler", default=None, help="Sigma spacing; default: the one the sampler name implies, else karras.")
@click.option("--steps", default=20, type=click.IntRange(1, 1000))
@click.option("--seed", default=0, type=int, help="Seed of the first image; image i uses seed + i.")
@click.option("--label", "labels", multiple=True, help="Class name or number for class-conditional models (repeatable; cycled).")
@click.option("--guidance", default=1.0, type=float, help="Classifier-free guidance scale (class models).")
def sample(model_dir: Path, out: Path, images: int, sampler: str, scheduler: str | None, steps: int, seed: int,
           labels: tuple[str, ...], guidance: float) -> None:
    """Sample a grid of images from a trained model folder (e.g. the `model/` folder a training run writes)."""
    from unstatic.grids import image_grid
    from unstatic.models import load_diffusion_model
    from unstatic.sampling.from_model import sample_model

    try:
        model = load_diffusion_model(model_dir)
        chosen = _class_numbers(labels, model.spec.class_names) if labels else None
        chosen = [chosen[i % len(chosen)] for i in range(images)] if chosen else None
        with click.progressbar(length=steps, label="sampling") as bar:
            result = sample_model(model, images, sampler=sampler, steps=steps, scheduler=scheduler, seed=seed,
                                  labels=chosen, guidance_scale=guidance, callback=lambda info: bar.update(1))
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(result).save(out)
    click.echo(f"wrote {out} ({images} images, {sampler}, {steps} steps, seeds {seed}..{seed + images - 1})")


def _class_numbers(labels: tuple[str, ...], class_names: tuple[str, ...]) -> list[int]:
    numbers = []
    for label in labels:
        if label.isdigit():
            numbers.append(int(label))
        elif label in class_names:
            numbers.append(class_names.index(label))
        else:
            raise ValueError(f"unknown class {label!r}; this model's classes: {', '.join(class_names) or '(none)'}")
    return numbers


if __name__ == "__main__":
    main()
