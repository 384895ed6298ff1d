"""The model that ships inside the package: present, small, stored in 16 bits, and working with no --model."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

from unstatic.cli import main
from unstatic.data.shapes import DEFAULT_HOLDOUT
from unstatic.models import BUNDLED_MODEL, bundled_model_folder, bundled_models, load_diffusion_model
from unstatic.pipelines.infotext import read_png_parameters

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_bundled_model_ships_small_and_in_16_bits():
    assert BUNDLED_MODEL in bundled_models()
    folder = bundled_model_folder()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 25 * 2**20, f"{folder} holds {size / 2**20:.1f} MiB; the issue allows 25"
    with safe_open(folder / "unet" / "model.safetensors", framework="pt") as handle:
        assert handle.metadata()["stored_as"] == "float16"
    model = load_diffusion_model(folder)
    assert {p.dtype for p in model.network.parameters()} == {torch.float32}
    spec = json.loads((folder / "model.json").read_text())
    assert spec["conditioning"] == "text" and spec["text_encoder"] == "minilm"
    config = json.loads((folder / "train_config.json").read_text())
    options = config["data"]["options"]  # the held-out combinations stay out of its training data
    assert options.get("split", "train") == "train" and list(options.get("holdout", DEFAULT_HOLDOUT))
    assert (folder / "README.md").is_file() and (folder / "training_log.jsonl").is_file()


def test_generate_uses_the_bundled_model_by_default(tmp_path):
    out = tmp_path / "default.png"
    result = CliRunner().invoke(main, ["generate", "a red circle above a blue square", "--steps", "3", "--seed", "5",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.size == (32, 32) and image.mode == "RGB"
    parameters = read_png_parameters(out)
    assert f"Model: {BUNDLED_MODEL}" in parameters and "Seed: 5" in parameters
    assert "CFG scale: 4," in parameters  # its own default guidance (its README: 2.5-4 best, 5 and up worse)
    assert "Guidance interval: 0.28-5.42," in parameters  # and interval: as good, a third fewer model calls


def test_the_guidance_interval_option(tmp_path):
    everywhere = tmp_path / "everywhere.png"
    result = CliRunner().invoke(main, ["generate", "a red circle", "--steps", "2", "--seed", "1", "--guidance-interval",
                                       "0", "inf", "--out", str(everywhere)])
    assert result.exit_code == 0, result.output
    assert "Guidance interval" not in read_png_parameters(everywhere)
    again = tmp_path / "again.png"  # the PNG says nothing of an interval: made again, guided at every step too
    result = CliRunner().invoke(main, ["generate", "--from-png", str(everywhere), "--out", str(again)])
    assert result.exit_code == 0 and Image.open(again).tobytes() == Image.open(everywhere).tobytes()
    result = CliRunner().invoke(main, ["generate", "a red circle", "--guidance-interval", "5", "1"])
    assert result.exit_code == 2 and "0 <= low < high" in result.output
