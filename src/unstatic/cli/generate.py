"""`unstatic generate` and `unstatic sample`: images from a model folder (the bundled model by default) through
the txt2img pipeline, with a progress bar, clear messages for bad requests, reproduction from a PNG's
parameters and a GIF of the reverse process."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import click
from click.core import ParameterSource

from unstatic.cli.app import main

EXAMPLE_PROMPT = "a red circle above a blue square"


def _model_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    """--model's default: the model that ships with unstatic; a usage error when it is missing."""
    if value is not None:
        return value
    from unstatic.models import bundled

    try:
        return bundled.bundled_model_folder()
    except FileNotFoundError as error:
        raise click.UsageError(
            f"no --model given, and the bundled model {bundled.BUNDLED_MODEL!r} is not installed: "
            "pass --model FOLDER (e.g. the model/ folder `unstatic train` writes)"
        ) from error


def unknown_name_message(kind: str, name: str, known: Mapping[str, str]) -> str:
    """"unknown sampler 'eulr'; did you mean: euler, euler_ancestral?": ``known`` maps every accepted spelling
    to its canonical name; the spellings closest to ``name`` (case, "_", "-" and spaces ignored) are
    suggested by canonical name."""
    from unstatic.core.spacings import normalise_name

    canonical = {normalise_name(alias): target for alias, target in known.items()}
    close = difflib.get_close_matches(normalise_name(name), list(canonical), n=6, cutoff=0.6)
    suggestions = list(dict.fromkeys(canonical[match] for match in close))[:4]
    if suggestions:
        return f"unknown {kind} {name!r}; did you mean: {', '.join(suggestions)}?"
    return f"unknown {kind} {name!r}; known: {', '.join(sorted(set(known.values())))}"


def check_sampler(name: str) -> str:
    """``name`` if the registry knows it, else a click.BadParameter suggesting close names."""
    from unstatic.sampling.registry import SAMPLERS, resolve_sampler

    try:
        resolve_sampler(name)
    except ValueError:
        known = {alias: info.name for info in SAMPLERS.values()
                 for alias in (info.name, info.display_name, *info.aliases)}
        raise click.BadParameter(unknown_name_message("sampler", name, known) + " (list: unstatic samplers)") from None
    return name


def _sampler_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return value if value is None else check_sampler(value)


def _interval_option(ctx: click.Context, param: click.Parameter, value: tuple[float, float] | None):
    """A valid (low, high) guidance interval, or None for the model's default."""
    if value is None:
        return None
    from unstatic.models.spec import check_guidance_interval

    try:
        return check_guidance_interval(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _scheduler_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A known spacing name, or None for "automatic" (A1111's word for the sampler's own default)."""
    if value is None or value.strip().lower() == "automatic":
        return None
    from unstatic.core.spacings import SPACINGS, resolve_spacing

    try:
        resolve_spacing(value)
    except ValueError:
        known = {name: name for name in [*SPACINGS, "automatic"]}
        raise click.BadParameter(unknown_name_message("scheduler", value, known)) from None
    return value


WEIGHT_DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}  # None: as stored (float16 files widen to float32)

# Options shared by the commands that sample a model, by name, so each command takes the ones it needs.
_OPTIONS = {
    "model": click.option(
        "--model", "model_dir", default=None, callback=_model_folder,
        type=click.Path(exists=True, path_type=Path),
        help="A model folder (ours, e.g. the model/ folder a training run writes, or a diffusers Stable Diffusion "
             "folder) or a single-file SD checkpoint (.safetensors); default: the model bundled with unstatic."),
    "sampler": click.option("--sampler", default="dpmpp_2m", callback=_sampler_option,
                            help="Any sampler name or alias (see `unstatic samplers`)."),
    "scheduler": click.option("--scheduler", default=None, callback=_scheduler_option,
                              help="Sigma spacing; default: the one the sampler name implies, else karras."),
    "steps": click.option("--steps", default=20, type=click.IntRange(1, 1000)),
    "seed": click.option("--seed", default=None, type=click.IntRange(0, 2**32 - 1),
                         help="Seed of the first image (image i uses seed + i); default: random."),
    "guidance": click.option("--guidance", "guidance_scale", default=None, type=float,
                             help="Classifier-free guidance scale (1 = off); default: the model's own (4 for the "
                                  "bundled model), else 5."),
    "guidance_interval": click.option(
        "--guidance-interval", "guidance_interval", default=None, type=(float, float), callback=_interval_option,
        metavar="LOW HIGH",
        help="Guide only at noise levels LOW <= sigma <= HIGH, one model call per step elsewhere (Kynkaanniemi et "
             "al. 2024); '0 inf' guides every step. Default: the model's own (the bundled model: 0.28 5.42), else every step."),
    "negative": click.option("--negative", "negative_prompt", default="", help="Negative prompt (text models)."),
    "width": click.option("--width", default=None, type=click.IntRange(1, 8192),
                          help="Image width in pixels; default: the model's training size."),
    "height": click.option("--height", default=None, type=click.IntRange(1, 8192),
                           help="Image height in pixels; default: the model's training size."),
    # Stable Diffusion checkpoints (models/stable_diffusion): what a single file may not carry.
    "vae": click.option("--vae", default=None, type=click.Path(exists=True, path_type=Path),
                        help="Stable Diffusion checkpoints: a VAE to use instead of (or in place of a missing) built-in one."),
    "prediction": click.option("--prediction", default=None, type=click.Choice(["eps", "v"]),
                               help="Stable Diffusion single files: what the U-Net predicts (SD 2.x 768-v models: v); "
                                    "default: from the file."),
    "tokenizer": click.option("--tokenizer", default=None, type=click.Path(exists=True, file_okay=False, path_type=Path),
                              help="Stable Diffusion single files from elsewhere: a CLIP tokenizer/ folder (they carry none)."),
    "dtype": click.option("--dtype", default="fp32", type=click.Choice(sorted(WEIGHT_DTYPES)),
                          help="The weights' dtype. bf16 and fp16 halve the model's memory; they compute in that "
                               "dtype on GPUs and on CPUs with instructions for it, in float32 (as fast as fp32) on "
                               "CPUs without them."),
}
_GENERATION_NAMES = ("model", "sampler", "scheduler", "steps", "seed", "guidance", "guidance_interval", "negative")
_GENERATION_OPTIONS = [_OPTIONS[name] for name in _GENERATION_NAMES]


def generation_options(*names: str) -> Callable:
    """A decorator adding the named shared options to a command, in the order given."""

    def decorate(command):
        for name in reversed(names):
            command = _OPTIONS[name](command)
        return command

    return decorate


# --model, --sampler, --scheduler, --steps, --seed, --guidance and --negative: what every sampling command takes.
_generation_options = generation_options(*_GENERATION_NAMES)


def weight_dtype(name: str):
    """``--dtype``'s value as what ``load_any_model(dtype=...)`` takes."""
    import torch

    return getattr(torch, WEIGHT_DTYPES[name]) if WEIGHT_DTYPES[name] else None


def load_pipeline(model_dir: Path, dtype: str = "fp32", **load_options):
    """The txt2img pipeline of a model folder or checkpoint file (``load_options``: ``vae``, ``prediction``,
    ``tokenizer`` for Stable Diffusion checkpoints), or a usage error saying what is wrong with it."""
    from unstatic.pipelines.txt2img import TextToImagePipeline

    load_options["dtype"] = weight_dtype(dtype)
    try:
        return TextToImagePipeline.from_folder(model_dir, **{k: v for k, v in load_options.items() if v is not None})
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error


@contextmanager
def sampling_progress(length: int, label: str = "sampling") -> Iterator[Callable]:
    """A progress bar over ``length`` sampler steps; yields the sampler callback that advances it.

    Warnings raised meanwhile (a prompt truncated to the encoder's token limit) are shown once each after the
    bar as ``warning: ...``, where they cannot be torn by it; ValueErrors (a size the model cannot do, an
    unknown class) become usage errors.
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)  # the CLI de-duplicates below
            with click.progressbar(length=length, label=label) as bar:
                yield lambda info: bar.update(1)
    except (ValueError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from error
    finally:
        show_warnings(caught)


def save_results(results, out: Path) -> None:
    """Write each result as a PNG with its parameters: ``out``, or ``out-1``, ``out-2``, ... for several."""
    for i, result in enumerate(results):
        path = out if len(results) == 1 else out.with_name(f"{out.stem}-{i + 1}{out.suffix}")
        result.save(path)
        click.echo(f"wrote {path} (seed {result.seed})")


def show_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    """Warnings caught while sampling, each user-facing one once, as ``warning: ...`` on stderr."""
    shown: set[str] = set()
    for warning in caught:
        if not issubclass(warning.category, UserWarning):
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        elif str(warning.message) not in shown:
            shown.add(str(warning.message))
            click.echo(f"warning: {warning.message}", err=True)


def check_prompt(pipe, prompt: str | None) -> str:
    """The prompt, or a usage error when a conditional model gets none."""
    spec = pipe.model.spec
    prompt = prompt or ""
    if prompt.strip() or spec.conditioning == "none":
        return prompt
    if spec.conditioning == "text":
        raise click.UsageError(
            f'give a prompt, e.g. unstatic generate "{EXAMPLE_PROMPT}". (The empty prompt is the unconditional '
            "branch that guidance steers away from; it describes no picture.)"
        )
    classes = ", ".join(spec.class_names) or f"0..{spec.num_classes - 1}"
    raise click.UsageError(f"give a class name as the prompt; this model draws: {classes}")


def _pipeline_arguments(ctx: click.Context, prompt: str | None, from_png: Path | None, steps: int,
                        options: dict) -> dict:
    """text_to_image keyword arguments from the options, or from a PNG's parameters with the options the user
    typed (not their defaults) taking precedence."""
    arguments = {"prompt": prompt, "num_inference_steps": steps, **options}
    if from_png is None:
        return arguments
    from unstatic.pipelines.infotext import read_png_parameters
    from unstatic.pipelines.reproduce import settings_from_infotext

    parameters = {"num_inference_steps": "steps"}  # argument -> click parameter, where the names differ
    typed = {"prompt": prompt} if prompt is not None else {}
    for name, value in arguments.items():
        source = ctx.get_parameter_source(parameters.get(name, name))
        if name != "prompt" and source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            typed[name] = value
    try:
        text = read_png_parameters(from_png)
        if text is None:
            raise ValueError(f"{from_png} carries no generation parameters (no 'parameters' text chunk)")
        return {**arguments, **settings_from_infotext(text, overrides=typed)}
    except (ValueError, OSError) as error:
        raise click.UsageError(str(error)) from error


def _warn_if_other_model(from_png: Path, model_name: str | None) -> None:
    from unstatic.pipelines.infotext import parse_infotext, read_png_parameters

    made_with = parse_infotext(read_png_parameters(from_png) or "")[2].get("Model")
    if made_with and made_with != model_name:
        click.echo(f"warning: {from_png} was made with model {made_with!r}, this is {model_name!r}: "
                   "the image may differ (pass --model to choose)", err=True)


@main.command(context_settings={"show_default": True})
@click.argument("prompt", required=False)
@click.option("--images", default=1, type=click.IntRange(1, 256), help="Images per prompt.")
@click.option("--out", default="unstatic.png", type=click.Path(dir_okay=False, path_type=Path),
              help="Output PNG; with several images, -1, -2, ... are added before the suffix.")
@click.option("--from-png", "from_png", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Make again the image whose parameters a PNG carries (ours or AUTOMATIC1111's): its prompt, "
                   "negative prompt, sampler, scheduler, steps, guidance, seed and size. Options and a prompt "
                   "given here override the PNG's.")
@click.option("--trajectory", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a GIF of the first image's reverse process (noisy state beside the clean estimate, "
                   "step by step) and a filmstrip PNG beside it (NAME-filmstrip.png).")
@_generation_options
@generation_options("width", "height", "vae", "prediction", "tokenizer", "dtype")
@click.pass_context
def generate(ctx: click.Context, prompt: str | None, images: int, out: Path, from_png: Path | None,
             trajectory: Path | None, model_dir: Path, steps: int, vae: Path | None, prediction: str | None,
             tokenizer: Path | None, dtype: str, **options) -> None:
    """Generate images from a PROMPT (a class name for class models, nothing for unconditional ones) with the
    bundled model or --model; each PNG carries its parameters as AUTOMATIC1111 writes them."""
    arguments = _pipeline_arguments(ctx, prompt, from_png, steps, options)
    pipe = load_pipeline(model_dir, dtype, vae=vae, prediction=prediction, tokenizer=tokenizer)
    arguments["prompt"] = check_prompt(pipe, arguments["prompt"])
    if from_png is not None:
        _warn_if_other_model(from_png, pipe.name)
    recorder = None
    with sampling_progress(arguments["num_inference_steps"]) as progress:
        if trajectory is not None:
            from unstatic.pipelines.trajectory import TrajectoryRecorder

            progress = recorder = TrajectoryRecorder(then=progress)
        results = pipe(num_images=images, callback=progress, **arguments)
    save_results(results, out)
    if recorder is not None:
        from unstatic.pipelines.trajectory import filmstrip_path, write_filmstrip, write_gif

        gif = write_gif(recorder.frames, trajectory)
        strip = write_filmstrip(recorder.frames, filmstrip_path(trajectory))
        click.echo(f"wrote {gif} and {strip} (the reverse process of seed {results[0].seed})")


@main.command(context_settings={"show_default": True})
@click.option("--label", "labels", multiple=True, help="Class name or number (repeatable; each gets a row); text models: a prompt.")
@click.option("--images", default=8, type=click.IntRange(1, 256), help="Images per label (or in all, for unconditional models).")
@click.option("--out", default="samples.png", type=click.Path(dir_okay=False, path_type=Path))
@_generation_options
@generation_options("width", "height")
def sample(labels: tuple[str, ...], images: int, out: Path, model_dir: Path, steps: int, **options) -> None:
    """Sample a grid of images from a model folder: one row per label, or a square grid."""
    from unstatic.grids import image_grid
    from unstatic.imaging import from_pil

    pipe = load_pipeline(model_dir)
    with sampling_progress(steps) as progress:
        results = pipe(list(labels) or [""], num_images=images, num_inference_steps=steps, callback=progress, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid([from_pil(r.image) for r in results], nrow=images if labels else None,
                      captions=[r.prompt for r in results] if labels else None)
    grid.save(out)
    click.echo(f"wrote {out} ({len(results)} images, seeds {results[0].seed}..{results[-1].seed})")
