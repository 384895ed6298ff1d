"""Outpainting: the extended canvas, the fills, the seam measure and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.editing.tiny import tiny_model
from unstatic.imaging import to_pil
from unstatic.pipelines.outpaint import extend_canvas, outpaint, seam_energy

pytestmark = pytest.mark.usefixtures("single_thread")


def _ramp(height: int, width: int) -> torch.Tensor:
    """A smooth image: a diagonal ramp with a gentle wave, the same in every channel."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return (0.5 * x + 0.3 * y + 0.1 * torch.sin(4 * x))[None].expand(3, -1, -1).clone()


def test_seam_energy_scores_a_smooth_extension_low_and_a_hard_edge_high():
    whole = _ramp(24, 24)
    box = (6, 4, 18, 20)
    assert 0.5 < seam_energy(whole, box) < 1.5  # the same smooth picture: the border does not stand out
    pasted = torch.full_like(whole, -0.8)
    pasted[:, 4:20, 6:18] = whole[:, 4:20, 6:18]
    assert seam_energy(pasted, box) > 20
    edge, _, edge_box = extend_canvas(whole[:, 4:20, 6:18], left=6, right=6, top=4, bottom=4, fill="edge")
    assert edge_box == box and seam_energy(edge, box) < seam_energy(pasted, box)


@pytest.mark.parametrize("fill", ["edge", "blur", "noise"])
def test_canvas_keeps_the_image_and_marks_the_new_area(fill):
    image = _ramp(6, 5)
    canvas, new, box = extend_canvas(image, left=2, top=3, bottom=1, fill=fill, generator=torch.Generator().manual_seed(0))
    assert canvas.shape == (3, 10, 7) and box == (2, 3, 7, 9)
    assert torch.equal(canvas[:, 3:9, 2:7], image) and new.sum() == 70 - 30 and new[0, 3:9, 2:7].eq(0).all()
    if fill == "edge":
        assert torch.equal(canvas[:, 3:9, 0], image[:, :, 0]) and torch.equal(canvas[:, 0, 2:7], image[:, 0])
    if fill == "noise":
        assert canvas[:, :3].std() > 0.5 * image.std()  # noise with the image's spread, not a flat colour


def test_outpaint_pipeline_extends_and_keeps_the_old_image():
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = outpaint(tiny_model(), to_pil(image), "star", right=8, fill="blur", mask_blur=0.5, overlap=1, seed=3,
                      num_inference_steps=2)[0]
    assert result.image.size == (16, 8)
    assert "Outpaint: left 0 right 8 top 0 bottom 0, Outpaint fill: blur" in result.infotext
    pixels, original = np.asarray(result.image, dtype=np.int16), np.asarray(to_pil(image), dtype=np.int16)
    assert np.array_equal(pixels[:, :5], original[:, :5])  # beyond the overlap and the blur's reach
    with pytest.raises(ValueError, match="nothing to outpaint"):
        outpaint(tiny_model(), to_pil(image), "star")
    with pytest.raises(ValueError, match="fill"):
        outpaint(tiny_model(), to_pil(image), "star", left=2, fill="plaid")
