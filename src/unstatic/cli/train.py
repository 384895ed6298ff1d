"""`unstatic train`: a thin wrapper over :func:`unstatic.training.trainer.train`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from unstatic.cli.app import main


@main.command(context_settings={"show_default": True})
@click.argument("config_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set optim.lr=1e-4 --set data.name=digits (repeatable).")
@click.option("--out", "output_dir", default=None, help="Output folder (same as --set output_dir=...).")
@click.option("--steps", default=None, type=click.IntRange(1), help="Total optimizer steps (same as --set steps=N).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config_file: Path | None, overrides: tuple[str, ...], output_dir: str | None, steps: int | None,
          quiet: bool) -> None:
    """Train a diffusion model (or, with task = "autoencoder", the VAE of latent diffusion) from a TOML config
    (and/or --set overrides); resumes from the newest checkpoint in the output folder (use a new --out to
    start over). Works the same under `torchrun --nproc_per_node N`; Ctrl-C saves a checkpoint and exits."""
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
    kind = "VAE (use it as data.vae)" if config.task == "autoencoder" else "model"
    click.echo(f"{result.reason.replace('_', ' ')} at step {result.step}; {kind}: {result.model_dir}; "
               f"checkpoint: {result.checkpoint}")
