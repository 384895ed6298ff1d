"""`unstatic convert`: a model from one format to another (diffusers folder, single file, our folder)."""

from __future__ import annotations

from pathlib import Path

import click

from unstatic.cli.app import main
from unstatic.cli.generate import generation_options


@main.command(context_settings={"show_default": True})
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(["diffusers", "single-file", "unstatic"]),
              help="The format to write: a diffusers folder, an original single .safetensors file, or our folder.")
@generation_options("vae", "prediction", "tokenizer")
def convert(source: Path, destination: Path, to: str, vae: Path | None, prediction: str | None, tokenizer: Path | None) -> None:
    """Convert the model at SOURCE (our folder, a diffusers folder or a single-file checkpoint) to DESTINATION."""
    from unstatic.models.stable_diffusion import convert_model

    options = {k: v for k, v in {"vae": vae, "prediction": prediction, "tokenizer": tokenizer}.items() if v is not None}
    try:
        loaded = convert_model(source, destination, to, **options)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise click.UsageError(str(error)) from error
    click.echo(f"wrote {destination} ({to}, from a {loaded.format} model)")
