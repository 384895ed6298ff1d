"""``unstatic convert`` round trips: diffusers folder -> our folder -> single file -> diffusers folder, each one
loading into a model that generates bit-identical images; and ``unstatic generate --model`` on each format."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.stable_diffusion.tiny import IMAGE, generate
from unstatic.cli import main
from unstatic.models.folder import save
from unstatic.models.stable_diffusion import convert_model, load_any_model, model_format
from unstatic.text.clip import CLIPTextEncoder

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_round_trip_through_every_format(family, sd_folders, loaded, tmp_path):
    reference = generate(loaded[family])
    ours, single, back = tmp_path / "ours", tmp_path / "model.safetensors", tmp_path / "diffusers"
    convert_model(sd_folders[family], ours, "unstatic")
    convert_model(ours, single, "single-file")
    convert_model(single, back, "diffusers")
    for path, kind in ((ours, "unstatic"), (single, "single-file"), (back, "diffusers")):
        assert model_format(path) == kind
        model = load_any_model(path).model
        assert model.spec == loaded[family].spec, kind
        torch.testing.assert_close(generate(model), reference, rtol=0, atol=0, msg=kind)
    scheduler = json.loads((back / "scheduler" / "scheduler_config.json").read_text())
    original = json.loads((sd_folders[family] / "scheduler" / "scheduler_config.json").read_text())
    for key in ("prediction_type", "timestep_spacing", "rescale_betas_zero_snr", "beta_schedule", "beta_start", "beta_end"):
        assert scheduler[key] == original[key], key


def test_clip_skip_survives_conversion(loaded, tmp_path):
    """SD 1.x keeps clip skip in our metadata; diffusers (no such setting) gets the text encoder cut to the layers
    read; SD 2.x files read the penultimate layer: every path encodes prompts as the model with clip skip 2."""
    for family in ("sd1", "sd2"):
        model = loaded[family]
        encoder = CLIPTextEncoder(model.text_encoder.model, model.text_encoder.tokenizer, clip_skip=2)
        skipped = replace(model, spec=replace(model.spec, clip_skip=2), text_encoder=encoder)
        expected = encoder.encode(["a red star"]).context
        assert not torch.equal(expected, model.text_encoder.encode(["a red star"]).context)
        folder = save(skipped, tmp_path / f"{family}-ours")
        for kind, path in (("unstatic", folder), ("single-file", tmp_path / f"{family}.safetensors"),
                           ("diffusers", tmp_path / f"{family}-d")):
            if kind != "unstatic":
                convert_model(folder, path, kind)
            got = load_any_model(path).model.text_encoder.encode(["a red star"]).context
            torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=f"{family} {kind}")


def test_cli_convert_and_generate_from_every_format(sd_folders, tmp_path):
    runner = CliRunner()
    single = tmp_path / "tiny.safetensors"
    result = runner.invoke(main, ["convert", str(sd_folders["sd1"]), str(single), "--to", "single-file"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and single.is_file()
    again = runner.invoke(main, ["convert", str(sd_folders["sd1"]), str(single), "--to", "single-file"])
    assert again.exit_code != 0 and "already exists" in again.output
    images = []
    for source in (sd_folders["sd1"], single):
        out = tmp_path / f"{source.stem}.png"
        result = runner.invoke(main, ["generate", "a red star", "--model", str(source), "--steps", "2", "--seed", "3",
                                      "--sampler", "euler", "--width", str(IMAGE), "--height", str(IMAGE), "--out", str(out)])
        assert result.exit_code == 0, result.output
        images.append(Image.open(out))
        assert "Model: " in images[-1].info["parameters"]
    assert images[0].size == (IMAGE, IMAGE) and images[0].tobytes() == images[1].tobytes()
