"""`unstatic img2img | inpaint | outpaint` on a tiny model folder: PNGs with parameters, clear errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from tests.editing.tiny import tiny_model
from unstatic.cli import main
from unstatic.models import save_diffusion_model

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    model = tiny_model()
    save_diffusion_model(model.network, model.spec, root / "tiny")
    Image.new("RGB", (8, 8), (200, 40, 40)).save(root / "in.png")
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))
    mask.save(root / "mask.png")
    return root


def _run(files, *args):
    common = ["--model", str(files / "tiny"), "--steps", "2", "--seed", "3", "--sampler", "Euler a"]
    return CliRunner().invoke(main, [*args, *common])


@pytest.mark.parametrize("command, extra, size, words", [
    ("img2img", ["--strength", "0.5", "--steps-convention", "a1111"], (8, 8), "Denoising strength: 0.5"),
    ("inpaint", ["--mask", "{mask}", "--mask-blur", "1"], (8, 8), "Mask blur: 1"),
    ("inpaint", ["--rect", "0,0,4,4", "--rect", "4,4,8,8", "--jumps", "2", "--jump-length", "1"], (8, 8), "Resample jumps: 2"),
    ("outpaint", ["--left", "4", "--top", "2", "--fill", "noise"], (12, 10), "Outpaint fill: noise"),
])
def test_commands_write_pngs_with_parameters(files, command, extra, size, words):
    out = files / f"{command}-{len(extra)}.png"
    extra = [e.format(mask=files / "mask.png") for e in extra]
    result = _run(files, command, str(files / "in.png"), "star", *extra, "--out", str(out), "--images", "2")
    assert result.exit_code == 0, result.output
    written = out.with_name(f"{out.stem}-2{out.suffix}")
    image = Image.open(written)
    assert image.size == size and words in image.text["parameters"] and "Seed: 4" in image.text["parameters"]
    assert "Sampler: Euler a" in image.text["parameters"]


@pytest.mark.parametrize("args, message", [
    (["inpaint", "{image}", "star"], "either --mask or --rect"),
    (["inpaint", "{image}", "star", "--rect", "1,1"], "x0,y0,x1,y1"),
    (["img2img", "{image}", "hexagon"], "unknown class"),
    (["outpaint", "{image}", "star"], "nothing to outpaint"),
])
def test_bad_input_is_a_usage_error(files, args, message):
    result = _run(files, *[a.format(image=files / "in.png") for a in args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_warnings_are_reported(files):
    Image.new("L", (4, 4), 255).save(files / "small-mask.png")
    result = _run(files, "inpaint", str(files / "in.png"), "star", "--mask", str(files / "small-mask.png"),
                  "--out", str(files / "w.png"))
    assert result.exit_code == 0 and "warning: mask is 4x4 but the image is 8x8" in result.output, result.output
