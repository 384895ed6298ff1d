"""`unstatic compare`: one seed and prompt across samplers and step counts, as a grid."""

from __future__ import annotations

from pathlib import Path

import click

from unstatic.cli.app import main
from unstatic.cli.generate import check_prompt, check_sampler, generation_options, load_pipeline, sampling_progress


def _samplers(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give at least one sampler, e.g. euler,heun,dpmpp_2m")
    return [check_sampler(name) for name in names]


def _step_counts(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated step counts such as 5,10,20, got {value!r}") from None
    if not counts or any(not 1 <= count <= 1000 for count in counts):
        raise click.BadParameter(f"step counts must be 1..1000, got {value!r}")
    return counts


@main.command(context_settings={"show_default": True})
@click.argument("prompt", required=False)
@click.option("--samplers", default="euler,heun,dpmpp_2m,unipc", callback=_samplers,
              help="Comma-separated sampler names (one grid row each).")
@click.option("--steps", "step_counts", default="5,10,20", callback=_step_counts,
              help="Comma-separated step counts (one grid column each).")
@click.option("--out", default="compare.png", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", default=None, type=click.IntRange(0, 2**32 - 1), help="The seed every tile shares; default: random.")
@generation_options("model", "scheduler", "guidance", "negative", "width", "height")
def compare(prompt: str | None, samplers: list[str], step_counts: list[int], out: Path, model_dir: Path,
            **options) -> None:
    """Make PROMPT with every sampler at every step count from one seed: a grid of samplers (rows) by step
    counts (columns), each tile captioned "<sampler> <steps>"."""
    from unstatic.pipelines.compare import compare_samplers

    pipe = load_pipeline(model_dir)
    prompt = check_prompt(pipe, prompt)
    with sampling_progress(len(samplers) * sum(step_counts)) as progress:
        comparison = compare_samplers(pipe, prompt, samplers, step_counts, callback=progress, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    comparison.grid.save(out)
    click.echo(f"wrote {out} ({len(samplers)} samplers x {len(step_counts)} step counts, seed {comparison.seed})")
