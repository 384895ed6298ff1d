"""`unstatic serve`: the HTTP API (AUTOMATIC1111-compatible endpoints and a job queue) and the web page."""

from __future__ import annotations

from pathlib import Path

import click

from unstatic.cli.app import main
from unstatic.cli.generate import generation_options, weight_dtype

LOOPBACK, ALL_INTERFACES = "127.0.0.1", "0.0.0.0"


def parse_models(entries: tuple[str, ...]) -> dict[str, Path]:
    """``NAME=FOLDER`` (or a bare FOLDER, named after itself) to ``{name: folder}``, in order; the bundled
    model when none is given."""
    if not entries:
        from unstatic.models import bundled

        try:
            folder = bundled.bundled_model_folder()
        except FileNotFoundError as error:
            raise click.UsageError(f"no --model given and the bundled model is not installed ({error}); "
                                   "pass --model NAME=FOLDER") from error
        return {folder.name: folder}
    models: dict[str, Path] = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        path = Path(folder if sep else entry)
        name = name.strip() if sep else path.name
        if not name:
            raise click.BadParameter(f"{entry!r}: give NAME=FOLDER", param_hint="--model")
        if name in models:
            raise click.BadParameter(f"model name {name!r} given twice", param_hint="--model")
        if not (path / "model.json").is_file():
            raise click.BadParameter(f"{path} is not a model folder (no model.json)", param_hint="--model")
        models[name] = path
    return models


@main.command(context_settings={"show_default": True})
@click.option("--model", "model_entries", multiple=True, metavar="NAME=FOLDER",
              help="A model to serve (repeatable; the first is current). Default: the bundled model.")
@click.option("--host", default=None, help=f"Address to bind. Default: {LOOPBACK} ({ALL_INTERFACES} with --listen).")
@click.option("--port", default=7860, type=click.IntRange(1, 65535), help="Port (A1111's default).")
@click.option("--listen", is_flag=True, help="Accept connections from other machines (binds all interfaces).")
@click.option("--api-auth", default=None, metavar="USER:PASS[,USER:PASS]",
              help="Require HTTP basic credentials for everything, the web page included.")
@click.option("--api-token", "api_tokens", multiple=True, envvar="UNSTATIC_API_TOKEN", metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' for the API (repeatable; env UNSTATIC_API_TOKEN).")
@click.option("--queue-size", default=16, type=click.IntRange(1, 10_000),
              help="Jobs that may wait; more are refused with 429.")
@click.option("--device", default="cpu", help="torch device to run the models on.")
@generation_options("dtype")
def serve(model_entries: tuple[str, ...], host: str | None, port: int, listen: bool, api_auth: str | None,
          api_tokens: tuple[str, ...], queue_size: int, device: str, dtype: str) -> None:
    """Serve models over HTTP: AUTOMATIC1111's /sdapi/v1 API, a job API (/v1/jobs) and a web page at /."""
    try:
        import uvicorn

        from unstatic.server import create_app
        from unstatic.server.auth import parse_credentials
    except ImportError as error:
        raise click.ClickException(f"{error}; the server needs its extra: pip install 'unstatic[serve]'") from error
    models = parse_models(model_entries)
    if api_auth:
        try:
            parse_credentials(api_auth)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--api-auth") from error
    host = host or (ALL_INTERFACES if listen else LOOPBACK)
    if host not in (LOOPBACK, "localhost", "::1") and not (api_auth or api_tokens):
        click.echo(f"warning: serving on {host} without --api-auth or --api-token: anyone who can reach this "
                   "port can use it", err=True)
    click.echo(f"loading {next(iter(models))} ...", err=True)
    try:
        app = create_app(models, queue_size=queue_size, api_auth=api_auth, api_tokens=api_tokens, device=device,
                         dtype=weight_dtype(dtype), preload=True)
    except Exception as error:  # the model folder does not load: say why, without a traceback
        raise click.ClickException(str(getattr(error, "detail", error))) from error
    shown = "localhost" if host in (LOOPBACK, ALL_INTERFACES) else host
    click.echo(f"serving {', '.join(models)} at http://{shown}:{port}/ (API: /sdapi/v1, jobs: /v1/jobs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
