"""`unstatic convert`: a model from one format to another (diffusers folder, single file, our folder)."""

from __future__ import annotations

from pathlib import Path

import click

from unstatic.cli.app import main


@main.command(context_settings={"show_default": True})
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(["diffusers", "single-file", "unstatic"]),
              help="The format to write: a diffusers folder, an original single .safetensors file, or our folder.")
@click.option("--vae", default=None, type=click.Path(exists=True, path_type=Path),
              help="A VAE to use instead of (or in place of a missing) one in SOURCE.")
@click.option("--prediction", default=None, type=click.Choice(["eps", "v"]),
              help="What the U-Net predicts, when SOURCE cannot say (SD 2.x 768-v single files: v).")
@click.option("--tokenizer", default=None, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A CLIP tokenizer/ folder, for single files that carry none.")
def convert(source: Path, destination: Path, to: str, vae: Path | None, prediction: str | None, tokenizer: Path | None) -> None:
    """Convert the model at SOURCE (our folder, a diffusers folder or a single-file checkpoint) to DESTINATION."""
    from unstatic.models.stable_diffusion import convert_model

    options = {k: v for k, v in {"vae": vae, "prediction": prediction, "tokenizer": tokenizer}.items() if v is not None}
    try:
        loaded = convert_model(source, destination, to, **options)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise click.UsageError(str(error)) from error
    click.echo(f"wrote {destination} ({to}, from a {loaded.format} model)")
