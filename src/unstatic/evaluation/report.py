"""The evaluator's report on a text-to-image model of the shapes world (``unstatic eval``): prompt fidelity per
prompt group, the Fréchet distance to renders of the same scenes, diversity across seeds, and what a perfect
generator scores on the same prompts.

The *perfect generator* is the shapes world itself: for each prompt, a render of a scene its caption describes as
well as the prompt's own scene (:func:`~unstatic.evaluation.frechet.caption_variants`: colours and shapes kept,
what the caption leaves unsaid redrawn). Its fidelity is each group's *ceiling* (the reader's own errors, and any
detail the matcher checks that the caption never stated, keep it below 100 %); its Fréchet distance to the renders
is the *floor* (the estimator is biased upwards at finite n, so even a perfect generator scores above 0). The
floor is taken on the same prompts and the same n as the generated images, so the two distances compare directly.

Images are read at the reader's resolution: a 64x64 generation is area-averaged (box filter) to 32x32 first, by
:func:`~unstatic.evaluation.shapes_reader.match_resolution`; the printed table says so when it happens.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import torch
from torch import Tensor

from unstatic.core.spacings import resolve_spacing
from unstatic.evaluation.fidelity import FAILURES, GROUPS, fidelity_report, prompt_set
from unstatic.evaluation.frechet import caption_variants, diversity, extract_features, frechet_distance
from unstatic.evaluation.shapes_reader import (
    ShapesReader,
    default_reader_folder,
    load_reader,
    match_resolution,
    render_scenes,
)
from unstatic.imaging import from_pil
from unstatic.models.folder import DiffusionModel
from unstatic.networks.weights import config_from_dict, config_to_dict, strip_type_and_version
from unstatic.pipelines.txt2img import TextToImagePipeline
from unstatic.sampling.registry import resolve_sampler

EVALUATION_SEED = 90_001  # a shapes-world seed no training config uses: the prompts' scenes are new to the model
READER_RESOLUTION = 32  # the committed reader; larger generations are area-averaged down to it


class Pipeline(Protocol):
    """What :func:`evaluate_model` generates with: :class:`TextToImagePipeline`'s call, one image per prompt,
    image i of a call seeded ``seed + i``."""

    def __call__(self, prompt: list[str], **options: Any) -> Sequence[Any]: ...  # items have ``.image`` (PIL)


@dataclass(frozen=True)
class EvaluationSettings:
    """How a model is evaluated.

    Args:
        count: prompts per group (one image each).
        steps, guidance, sampler, scheduler: the generation settings (``scheduler=None``: the pipeline's default).
        guidance_interval: ``(low, high)`` noise levels to guide at, ``()`` every step, None the model's default
            (a report records the interval used).
        seed: seed of the first image (image i of the run uses ``seed + i``).
        batch: images per pipeline call.
        groups: prompt groups, a subset of :data:`~unstatic.evaluation.fidelity.GROUPS`.
        diversity_prompts, diversity_seeds: single-object prompts and images per prompt for diversity (0: skip).
        world_seed: the shapes world the prompts' scenes are drawn from.
    """

    count: int = 100
    steps: int = 20
    guidance: float = 4.0
    guidance_interval: tuple[float, ...] | None = None
    sampler: str = "dpmpp_2m"
    scheduler: str | None = None
    seed: int = 0
    batch: int = 25
    groups: tuple[str, ...] = GROUPS
    diversity_prompts: int = 16
    diversity_seeds: int = 4
    world_seed: int = EVALUATION_SEED

    TYPE = "evaluation_settings"
    VERSION = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        unknown = [g for g in self.groups if g not in GROUPS]
        if not self.groups or unknown or len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups must be distinct names among {', '.join(GROUPS)}, got {self.groups}")
        for name in ("count", "steps", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.count * len(self.groups) < 2:
            raise ValueError("the Fréchet distance needs at least 2 images: raise count or add a group")
        if self.diversity_prompts < 0 or (self.diversity_prompts and self.diversity_seeds < 2):
            raise ValueError(f"diversity needs diversity_seeds >= 2 (or diversity_prompts = 0), got "
                             f"{self.diversity_prompts} prompts x {self.diversity_seeds} seeds")  # fmt: skip
        resolve_sampler(self.sampler)  # unknown names fail here, before anything is generated
        if self.scheduler is not None:
            resolve_spacing(self.scheduler)

    @property
    def images(self) -> int:
        """How many images an evaluation generates (the length of its progress bar)."""
        return self.count * len(self.groups) + self.diversity_prompts * self.diversity_seeds


@dataclass(frozen=True)
class GroupScore:
    """Fidelity of one prompt group (or ``"all"``): matched images, their fraction with a 95 % Wilson interval
    ``[low, high]``, the perfect generator's fraction on the same prompts (``ceiling``), and why the other images
    failed (``failures``: how many of each of :data:`~unstatic.evaluation.fidelity.FAILURES`)."""

    group: str
    matched: int
    total: int
    fraction: float
    low: float
    high: float
    ceiling: float
    failures: dict[str, int] = field(default_factory=dict)  # reports saved before it was added have none


@dataclass(frozen=True)
class Diversity:
    """Mean pairwise reader-feature distance among one prompt's images, averaged over prompts: ``generated``,
    the same for renders of scenes the caption describes equally well (``reference``), and their ``ratio``."""

    prompts: int
    seeds: int
    generated: float
    reference: float
    ratio: float


@dataclass(frozen=True)
class QualityReport:
    """What :func:`evaluate_model` measured; :meth:`format_table` prints it, :meth:`to_dict` saves it as JSON."""

    model: str
    settings: EvaluationSettings
    image_size: int
    reader_resolution: int
    scores: tuple[GroupScore, ...]  # one per group, then "all"
    frechet: float
    floor: float
    diversity: Diversity | None
    seconds_per_image: float

    TYPE = "quality_report"
    VERSION = 1

    def score(self, group: str) -> GroupScore:
        """The row of ``group`` (or ``"all"``)."""
        for row in self.scores:
            if row.group == group:
                return row
        raise KeyError(f"no group {group!r} in this report; have {[r.group for r in self.scores]}")

    def format_table(self) -> str:
        s = self.settings
        images = sum(r.total for r in self.scores if r.group != "all")
        size = f"{self.image_size}x{self.image_size}"
        if self.image_size != self.reader_resolution:
            size += f", area-averaged to the reader's {self.reader_resolution}x{self.reader_resolution}"
        lines = [
            f"{self.model}: {images} images ({size}); {s.sampler}, {s.steps} steps, schedule "
            f"{s.scheduler or 'default'}, guidance {s.guidance:g}{_interval_label(s.guidance_interval)}, seed {s.seed}; "
            f"{self.seconds_per_image:.2f} s/image",
            "",
            f"{'prompts':12s} {'matched':>9s} {'fraction':>8s}  {'95% interval':16s} {'ceiling':>7s}",
        ]
        for r in self.scores:
            lines.append(f"{r.group:12s} {r.matched:5d}/{r.total:<3d} {r.fraction:8.1%}  "
                         f"{f'[{r.low:.1%}, {r.high:.1%}]':16s} {r.ceiling:7.1%}")  # fmt: skip
        lines += self._failure_lines()
        lines += ["", f"Fréchet distance (reader features) to renders of the same scenes: {self.frechet:.1f}; "
                      f"perfect-generator floor at n={images}: {self.floor:.1f}"]  # fmt: skip
        if self.diversity:
            d = self.diversity
            lines.append(f"diversity across {d.seeds} seeds ({d.prompts} prompts): generated {d.generated:.3f}, "
                         f"data {d.reference:.3f}, ratio {d.ratio:.2f}")  # fmt: skip
        lines.append("ceiling and floor: what renders of scenes each caption describes equally well score")
        return "\n".join(lines)

    def _failure_lines(self) -> list[str]:
        """Why images failed, per group: the first mismatch of each (``fidelity.FAILURES``), the kinds that occur."""
        kinds = [kind for kind in FAILURES if any(r.failures.get(kind) for r in self.scores)]
        if not kinds:
            return []
        widths = [max(len(kind), 5) for kind in kinds]
        lines = ["", "why the others failed (the first mismatch of each image: count of objects, shape, colour, "
                     "binding = right shapes and colours paired wrongly, placement = cell or relation)",
                 f"{'prompts':12s} " + " ".join(f"{kind:>{w}s}" for kind, w in zip(kinds, widths))]  # fmt: skip
        for r in self.scores:
            lines.append(f"{r.group:12s} " + " ".join(f"{r.failures.get(kind, 0):{w}d}" for kind, w in zip(kinds, widths)))
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_dict` reads it back into an equal report."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["settings"] = config_to_dict(self.settings)
        data["scores"] = [asdict(r) for r in self.scores]
        data["diversity"] = asdict(self.diversity) if self.diversity else None
        return {"type": self.TYPE, "version": self.VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityReport:
        data = strip_type_and_version(cls, data)
        data["settings"] = config_from_dict(EvaluationSettings, data["settings"])
        data["scores"] = tuple(GroupScore(**r) for r in data["scores"])
        data["diversity"] = Diversity(**data["diversity"]) if data["diversity"] else None
        return cls(**data)


def evaluate_model(
    model: DiffusionModel | TextToImagePipeline | Pipeline,
    settings: EvaluationSettings | None = None,
    *,
    reader: ShapesReader | None = None,
    progress: Callable[[int], object] | None = None,
    name: str | None = None,
) -> QualityReport:
    """Generate one image per evaluation prompt (and ``diversity_seeds`` per diversity prompt) with ``model``
    (a text-conditioned model, its pipeline, or any callable with the pipeline's call) and score them.
    ``progress(n)`` is called after each batch of n images; ``reader`` defaults to the committed 32x32 one."""
    settings = settings or EvaluationSettings()
    pipe = TextToImagePipeline(model) if isinstance(model, DiffusionModel) else model
    reader = reader or load_reader(default_reader_folder(READER_RESOLUTION))
    resolution = reader.config.resolution
    if isinstance(pipe, TextToImagePipeline):  # other callables are checked by their first images
        spec = pipe.model.spec
        if spec.conditioning != "text":
            raise ValueError(f"the evaluator scores text-to-image models; this one is conditioned on {spec.conditioning!r}")
        if spec.image_size % resolution:
            raise ValueError(f"the reader reads {resolution}x{resolution} images (or multiples, area-averaged); this "
                             f"model makes {spec.image_size}x{spec.image_size}")  # fmt: skip
        pipe.conditioner.prompts([""])  # loads the text encoder (done on first use) before the clock starts
        if settings.guidance_interval is None:  # record what the model's default is
            settings = replace(settings, guidance_interval=spec.default_guidance_interval)
    prompts = [(g, c, s) for g in settings.groups for c, s in prompt_set(g, settings.count, settings.world_seed)]
    groups, captions, scenes = (list(column) for column in zip(*prompts))
    texts = [c.text for c in captions]

    few = prompt_set("single", settings.diversity_prompts, settings.world_seed + 2) if settings.diversity_prompts else []
    started = time.perf_counter()
    images, side = _generate(pipe, texts, settings, resolution, progress)
    if few:  # each prompt diversity_seeds times, every image with its own seed
        repeated, _ = _generate(pipe, [c.text for c, _ in few for _ in range(settings.diversity_seeds)], settings,
                                resolution, progress)  # fmt: skip
    seconds = (time.perf_counter() - started) / settings.images
    spread = None
    if few:
        values = diversity(reader, repeated.unflatten(0, (len(few), settings.diversity_seeds)), few, settings.seed)
        spread = Diversity(len(few), settings.diversity_seeds, **values)

    rng = random.Random(f"unstatic.evaluation.report/{settings.seed}")
    perfect = render_scenes([caption_variants(c, s, 1, rng)[0] for c, s in zip(captions, scenes)], resolution)
    reference = extract_features(reader, render_scenes(scenes, resolution))
    achieved, ceiling = (fidelity_report(reader, x, scenes, groups, captions=captions) for x in (images, perfect))
    scores = tuple(GroupScore(group, **row, ceiling=ceiling[group]["fraction"]) for group, row in achieved.items())
    return QualityReport(
        model=name or getattr(pipe, "name", None) or type(pipe).__name__, settings=settings, image_size=side,
        reader_resolution=resolution, scores=scores,
        frechet=frechet_distance(extract_features(reader, images), reference),
        floor=frechet_distance(extract_features(reader, perfect), reference),
        diversity=spread, seconds_per_image=seconds,
    )  # fmt: skip


def _interval_label(interval: tuple[float, ...] | None) -> str:
    if interval is None:
        return " (the model's interval)"
    return f" at noise levels {interval[0]:g}-{interval[1]:g}" if interval else ""


def _generate(
    pipe: Pipeline, captions: list[str], settings: EvaluationSettings, resolution: int,
    progress: Callable[[int], object] | None,
) -> tuple[Tensor, int]:
    """Images for ``captions`` ``[N, 3, R, R]`` at the reader's resolution ``R`` in [-1, 1] (decoded from the
    8-bit images users get), and the side they were generated at. Image i uses seed ``settings.seed + i``, so
    the result does not depend on ``settings.batch``."""
    images, side = [], None
    for start in range(0, len(captions), settings.batch):
        interval = {} if settings.guidance_interval is None else {"guidance_interval": settings.guidance_interval}
        results = pipe(captions[start : start + settings.batch], num_inference_steps=settings.steps,
                       guidance_scale=settings.guidance, sampler=settings.sampler, scheduler=settings.scheduler,
                       seed=settings.seed + start, **interval)  # fmt: skip
        batch = torch.stack([from_pil(r.image.convert("RGB")) for r in results])
        side = batch.shape[-1]
        images.append(match_resolution(batch, resolution))  # area-averaged now: keeps memory at the reader's size
        if progress is not None:
            progress(len(results))
    return torch.cat(images), side

