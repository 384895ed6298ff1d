"""The README's main job: `unstatic demo` writes a PNG of the reverse process."""

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from unstatic.cli import main
from unstatic.pipelines.analytic_demo import demo_model, run_demo


def test_demo_writes_a_png(tmp_path):
    out = tmp_path / "demo.png"
    result = CliRunner().invoke(main, ["demo", "--steps", "8", "--images", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.size[1] == 2 * 96 and image.size[0] >= 2 * 96


def test_demo_samples_are_pictures_of_the_model():
    """Every sample lands next to one of the model's pictures (the exact model's components)."""
    result = run_demo("Euler a", steps=30, images=4, seed=3)
    model = demo_model()
    distances = torch.cdist(result.samples.double().flatten(1), model.means.flatten(1))
    # Within a few pixel standard deviations (0.04 * sqrt(3072) ~ 2.2) of a component mean.
    assert bool((distances.min(1).values < 4.0).all()), distances.min(1).values


def test_demo_rejects_unknown_sampler_clearly():
    result = CliRunner().invoke(main, ["demo", "--sampler", "warp drive", "--out", "x.png"])
    assert result.exit_code == 2 and "unknown sampler 'warp drive'" in result.output


def test_samplers_command_lists_every_sampler():
    output = CliRunner().invoke(main, ["samplers"]).output
    for name in ("dpmpp_2m", "euler_ancestral", "unipc", "lcm"):
        assert name in output


@pytest.mark.parametrize("images", [0, -1])
def test_demo_rejects_bad_image_counts(images):
    with pytest.raises(ValueError, match="images must be at least 1"):
        run_demo(images=images)
