"""`unstatic img2img`, `unstatic inpaint`, `unstatic outpaint`: image editing through the editing pipelines."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from unstatic.cli.app import main
from unstatic.cli.generate import _generation_options, generation_options, save_results, show_warnings, weight_dtype
from unstatic.sampling.img2img import STEP_CONVENTIONS

_IMAGE = click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
_PROMPT = click.argument("prompt", default="")
_IMAGES = click.option("--images", default=1, type=click.IntRange(1, 256), help="Images per prompt.")
_CONVENTION = click.option("--steps-convention", type=click.Choice(STEP_CONVENTIONS), default="run",
                           help="What --steps counts at strength < 1: run = the steps actually run; a1111 / diffusers "
                                "= steps of the full schedule, of which about strength x steps are run.")
_MASK_BLUR = click.option("--mask-blur", default=4.0, type=click.FloatRange(0), help="Mask feathering (Gaussian std, px).")


def _out(default: str):
    return click.option("--out", default=default, type=click.Path(dir_okay=False, path_type=Path),
                        help="Output PNG; with several images, -1, -2, ... are added before the suffix.")


class _Progress:
    """A progress bar sized by the first step report (edits run a number of steps only the sampler knows)."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, info) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=info.steps, label="sampling")
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()


def _run(edit, model_dir: Path | None, out: Path, images: int, steps: int, dtype: str, **options) -> None:
    """Load the model, run ``edit(model, ...)``, write the PNGs; bad input becomes a usage error, warnings are
    reported on stderr."""
    from unstatic.models import bundled_model_folder
    from unstatic.models.stable_diffusion.load import load_any_model

    progress = _Progress()
    try:
        folder = model_dir or bundled_model_folder()
        loaded = load_any_model(folder, dtype=weight_dtype(dtype))  # our folders, diffusers folders, single files
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = edit(loaded.model, num_images=images, num_inference_steps=steps, callback=progress,
                           model_name=Path(folder).name, model_hash=loaded.model_hash, **options)
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    finally:
        progress.close()
    show_warnings(caught)
    save_results(results, out)


@main.command(context_settings={"show_default": True})
@_IMAGE
@_PROMPT
@click.option("--strength", default=0.75, type=click.FloatRange(0, 1), help="0 keeps the image, 1 ignores it.")
@_CONVENTION
@_IMAGES
@_out("img2img.png")
@_generation_options
@generation_options("dtype")
def img2img(image: Path, prompt: str, model_dir: Path | None, out: Path, images: int, steps: int, **options) -> None:
    """Redraw IMAGE with PROMPT, keeping its layout (more of it at lower --strength)."""
    from unstatic.pipelines.img2img import image_to_image

    _run(lambda model, **kw: image_to_image(model, image, prompt, **kw), model_dir, out, images, steps, **options)


@main.command(context_settings={"show_default": True})
@_IMAGE
@_PROMPT
@click.option("--mask", "mask_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mask PNG: white = repaint, black = keep.")
@click.option("--rect", "rects", multiple=True, help="Rectangle to repaint, x0,y0,x1,y1 in pixels (repeatable).")
@_MASK_BLUR
@click.option("--strength", default=1.0, type=click.FloatRange(0, 1), help="Below 1, start from the noised original.")
@_CONVENTION
@click.option("--only-masked", is_flag=True, help="Work on a box around the mask at the model's resolution.")
@click.option("--padding", default=32, type=click.IntRange(0), help="Padding around the mask in --only-masked mode.")
@click.option("--jumps", default=1, type=click.IntRange(1), help="RePaint resampling: times each stretch is redone.")
@click.option("--jump-length", default=10, type=click.IntRange(1), help="RePaint resampling: steps per stretch.")
@_IMAGES
@_out("inpaint.png")
@_generation_options
@generation_options("dtype")
def inpaint(image: Path, prompt: str, mask_path: Path | None, rects: tuple[str, ...], model_dir: Path | None, out: Path,
            images: int, steps: int, **options) -> None:
    """Repaint the masked part of IMAGE with PROMPT (give --mask or --rect)."""
    from unstatic.pipelines.inpaint import inpaint as inpaint_image
    from unstatic.pipelines.masks import rect_mask
    from unstatic.pipelines.source_image import load_image

    if (mask_path is None) == (not rects):
        raise click.UsageError("give either --mask or --rect (one or more)")
    try:
        width, height = load_image(image).size
        mask = mask_path if mask_path is not None else rect_mask(rects, height, width)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    _run(lambda model, **kw: inpaint_image(model, image, mask, prompt, **kw), model_dir, out, images, steps, **options)


@main.command(context_settings={"show_default": True})
@_IMAGE
@_PROMPT
@click.option("--left", default=0, type=click.IntRange(0), help="Pixels to add on the left.")
@click.option("--right", default=0, type=click.IntRange(0), help="Pixels to add on the right.")
@click.option("--top", default=0, type=click.IntRange(0), help="Pixels to add at the top.")
@click.option("--bottom", default=0, type=click.IntRange(0), help="Pixels to add at the bottom.")
@click.option("--fill", type=click.Choice(["edge", "blur", "noise"]), default="edge",
              help="What the new area starts as (matters at --strength < 1).")
@_MASK_BLUR
@click.option("--strength", default=0.8, type=click.FloatRange(0, 1))
@_CONVENTION
@_IMAGES
@_out("outpaint.png")
@_generation_options
@generation_options("dtype")
def outpaint(image: Path, prompt: str, model_dir: Path | None, out: Path, images: int, steps: int, **options) -> None:
    """Extend IMAGE by --left/--right/--top/--bottom pixels and paint the new area with PROMPT."""
    from unstatic.pipelines.outpaint import outpaint as outpaint_image

    _run(lambda model, **kw: outpaint_image(model, image, prompt, **kw), model_dir, out, images, steps, **options)
