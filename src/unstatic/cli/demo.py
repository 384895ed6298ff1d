"""`unstatic demo` and `unstatic samplers`: the built-in exact model, and what can sample it."""

from __future__ import annotations

from pathlib import Path

import click

from unstatic.cli.app import main
from unstatic.core.spacings import SPACINGS
from unstatic.sampling import SAMPLERS


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
