"""Image grids: layout arithmetic, tiles equal to ``to_pil`` of their inputs, captions kept in their column."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from unstatic.grids import image_grid
from unstatic.imaging import to_pil


def _images(count: int, channels: int = 3, height: int = 4, width: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, channels, height, width, generator=generator) * 2 - 1


def _expected_size(count, nrow, height, width, padding, scale, caption_height=0):
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    return (
        columns * (width * scale + padding) + padding,
        rows * (height * scale + caption_height + padding) + padding,
    )


@pytest.mark.parametrize(
    ("count", "nrow", "padding", "scale"),
    [(5, 3, 2, 2), (6, 2, 0, 1), (1, 4, 3, 3), (7, 7, 1, 1), (3, 10, 2, 1)],
)
def test_grid_size_follows_the_layout_arithmetic(count, nrow, padding, scale):
    grid = image_grid(_images(count), nrow=nrow, padding=padding, scale=scale)
    assert grid.mode == "RGB"
    assert grid.size == _expected_size(count, nrow, 4, 6, padding, scale)


@pytest.mark.parametrize("count", [1, 4, 5, 10, 16, 17])
def test_default_nrow_is_about_the_square_root(count):
    grid = image_grid(_images(count), padding=0)
    columns = grid.size[0] // 6
    assert columns == math.ceil(math.sqrt(count))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scale", [1, 3])
def test_tiles_equal_to_pil_of_each_input(channels, scale):
    images = _images(5, channels=channels, height=5, width=7, seed=channels)
    padding, columns = 2, 3
    grid = np.asarray(image_grid(images, nrow=columns, padding=padding, scale=scale))
    tile_h, tile_w = 5 * scale, 7 * scale
    for index, image in enumerate(images):
        top = padding + (index // columns) * (tile_h + padding)
        left = padding + (index % columns) * (tile_w + padding)
        expected = to_pil(image).convert("RGB").resize((tile_w, tile_h), Image.Resampling.NEAREST)
        np.testing.assert_array_equal(grid[top : top + tile_h, left : left + tile_w], np.asarray(expected))
    if channels == 1:
        assert (grid[..., 0] == grid[..., 1]).all() and (grid[..., 1] == grid[..., 2]).all()


def test_a_list_of_images_gives_the_same_grid_as_a_batch():
    images = _images(4)
    assert np.array_equal(np.asarray(image_grid(list(images))), np.asarray(image_grid(images)))


def test_padding_and_empty_cells_are_background():
    background = (10, 200, 30)
    images = _images(5, height=4, width=4)
    padding = 3
    grid = np.asarray(image_grid(images, nrow=3, padding=padding, background=background))
    mask = np.ones(grid.shape[:2], dtype=bool)  # True where no tile was pasted
    for index in range(5):
        top, left = padding + (index // 3) * (4 + padding), padding + (index % 3) * (4 + padding)
        mask[top : top + 4, left : left + 4] = False
    assert (grid[mask] == background).all()
    # The sixth cell (row 1, column 2) is empty.
    top, left = padding + 1 * (4 + padding), padding + 2 * (4 + padding)
    assert (grid[top : top + 4, left : left + 4] == background).all()


def test_captions_add_height_per_row_and_draw_text_under_tiles():
    images = _images(4, height=16, width=32)
    plain = image_grid(images, nrow=2, padding=2)
    captioned = image_grid(images, nrow=2, padding=2, captions=["cat", "dog", "owl", "fox"])
    assert captioned.size[0] == plain.size[0]
    extra = captioned.size[1] - plain.size[1]
    assert extra > 0 and extra % 2 == 0  # two rows, each with the same caption band
    band = np.asarray(captioned)[2 + 16 : 2 + 16 + extra // 2, 2 : 2 + 32]  # under the first tile
    assert (band.max(axis=-1) < 128).any(), "no dark text pixels in the first caption band"


def test_long_captions_wrap_inside_their_column_and_are_capped():
    images = _images(3, height=8, width=24)
    padding = 8
    short = image_grid(images, nrow=3, padding=padding, captions=["a", "b", "c"])
    long_text = "a painting of a lighthouse on a cliff at dusk, oil on canvas " * 5
    long = image_grid(images, nrow=3, padding=padding, captions=[long_text, "b", "supercalifragilistic" * 4])
    longer = image_grid(images, nrow=3, padding=padding, captions=[long_text * 3, "b", "c"])
    assert long.size[1] > short.size[1]  # wrapped onto several lines
    assert longer.size[1] == long.size[1]  # but capped at the same number of lines
    # Text never spills into the padding strips between columns.
    pixels = np.asarray(long)
    for column in range(4):
        left = column * (24 + padding)
        assert (pixels[:, left : left + padding] == 255).all(), f"text in the gutter left of column {column}"


def test_dark_background_gets_light_captions():
    grid = np.asarray(image_grid(_images(1, height=8, width=40), captions=["hello"], background=(0, 0, 0)))
    band = grid[2 + 8 :, :]
    assert (band.min(axis=-1) > 128).any()


@pytest.mark.parametrize(
    ("images", "kwargs"),
    [
        (torch.zeros(3, 4, 4), {}),  # one image without the batch dimension
        (torch.zeros(2, 2, 4, 4), {}),  # two channels
        (torch.zeros(0, 3, 4, 4), {}),  # empty batch
        ([], {}),
        ([torch.zeros(3, 4, 4), torch.zeros(3, 4, 5)], {}),  # mismatched shapes
        ([torch.zeros(1, 3, 4, 4)], {}),  # list of batches
        (torch.zeros(2, 3, 4, 4), {"nrow": 0}),
        (torch.zeros(2, 3, 4, 4), {"scale": 0}),
        (torch.zeros(2, 3, 4, 4), {"scale": 1.5}),
        (torch.zeros(2, 3, 4, 4), {"padding": -1}),
        (torch.zeros(2, 3, 4, 4), {"captions": ["only one"]}),
        (torch.zeros(2, 3, 4, 4), {"captions": "ab"}),
        (torch.zeros(2, 3, 4, 4), {"background": (0, 0, 300)}),
    ],
)
def test_bad_input_raises_value_error(images, kwargs):
    with pytest.raises(ValueError):
        image_grid(images, **kwargs)
