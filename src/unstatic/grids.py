"""Image grids: many ``[C, H, W]`` tensors in [-1, 1] tiled into one PIL image, with optional captions.

Used for training samples every N steps, and for pipeline/CLI batch previews. The layout follows
torchvision's ``make_grid``: ``padding`` pixels of background around and between tiles, so a grid of
``rows x columns`` tiles of ``h x w`` (after ``scale``) is
``(columns * (w + padding) + padding) x (rows * (h + caption_height + padding) + padding)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from unstatic.imaging import to_pil

# A caption never takes more lines than this; longer text is cut with an ellipsis so one chatty prompt
# cannot make every tile's caption box tall.
MAX_CAPTION_LINES = 3
_CAPTION_GAP = 2  # pixels between a tile and its caption
_ELLIPSIS = "\u2026"


def image_grid(
    images: Tensor | Sequence[Tensor],
    nrow: int | None = None,
    captions: Sequence[str] | None = None,
    padding: int = 2,
    scale: int = 1,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Tile ``images`` (``[N, C, H, W]`` or N ``[C, H, W]`` tensors in [-1, 1], C = 1 or 3) into an RGB image.

    ``nrow`` is the number of images per row (default ``ceil(sqrt(N))``; values above N are clamped to N).
    ``scale`` enlarges each tile by an integer factor with nearest-neighbour sampling, so 8x8 or 32x32
    samples stay crisp. ``captions`` (one per image) are drawn under the tiles in Pillow's default font,
    word-wrapped to the tile width, at most ``MAX_CAPTION_LINES`` lines, cut with an ellipsis beyond.
    One-channel images become grey RGB tiles, so a grid is always ``RGB``.
    """
    batch = _as_batch(images)
    count = batch.shape[0]
    if nrow is None:
        nrow = math.ceil(math.sqrt(count))
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    background = _check_color(background)
    if captions is not None:
        if isinstance(captions, str):
            raise ValueError("captions must be a sequence of strings, one per image, not a single string")
        if len(captions) != count:
            raise ValueError(f"captions has {len(captions)} entries for {count} images")

    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    tile_height, tile_width = batch.shape[2] * scale, batch.shape[3] * scale

    font = ImageFont.load_default()
    caption_lines = [_wrap(str(text), font, tile_width) for text in captions] if captions is not None else []
    line_height = _line_height(font)
    most_lines = max((len(lines) for lines in caption_lines), default=0)
    caption_height = _CAPTION_GAP + most_lines * line_height if most_lines else 0
    cell_width, cell_height = tile_width + padding, tile_height + caption_height + padding

    grid = Image.new("RGB", (columns * cell_width + padding, rows * cell_height + padding), background)
    draw = ImageDraw.Draw(grid)
    text_color = _contrasting_text_color(background)
    for index in range(count):
        left = padding + (index % columns) * cell_width
        top = padding + (index // columns) * cell_height
        tile = to_pil(batch[index]).convert("RGB")
        if scale > 1:
            tile = tile.resize((tile_width, tile_height), Image.Resampling.NEAREST)
        grid.paste(tile, (left, top))
        for line_index, line in enumerate(caption_lines[index] if caption_lines else []):
            y = top + tile_height + _CAPTION_GAP + line_index * line_height
            ink_left = font.getbbox(line)[0]
            draw.text((left - min(ink_left, 0), y), line, fill=text_color, font=font)  # keep ink in the column
    return grid


def _as_batch(images: Tensor | Sequence[Tensor]) -> Tensor:
    """One ``[N, C, H, W]`` tensor from either form of input, with the shape checked."""
    if isinstance(images, Tensor):
        batch = images
    else:
        images = list(images)
        if not images:
            raise ValueError("images is empty; a grid needs at least one image")
        for index, image in enumerate(images):
            if not isinstance(image, Tensor) or image.ndim != 3:
                shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"images[{index}] must be a [C, H, W] tensor, got {shape}")
            if image.shape != images[0].shape:
                raise ValueError(
                    f"images[{index}] has shape {tuple(image.shape)}, but images[0] has {tuple(images[0].shape)}"
                )
        batch = torch.stack([image.detach() for image in images])
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, C, H, W] with C = 1 or 3, got shape {tuple(batch.shape)}")
    if batch.shape[0] == 0 or batch.shape[2] == 0 or batch.shape[3] == 0:
        raise ValueError(f"images must be non-empty, got shape {tuple(batch.shape)}")
    return batch


def _check_color(color: Sequence[int]) -> tuple[int, int, int]:
    """An ``(r, g, b)`` tuple of 0..255 ints, or a ValueError naming the bad value."""
    values = tuple(color)
    if len(values) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in values):
        raise ValueError(f"background must be an (r, g, b) tuple of ints in 0..255, got {color!r}")
    return values  # type: ignore[return-value]


def _contrasting_text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Near-black text on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    red, green, blue = background
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    return (20, 20, 20) if luma >= 128 else (255, 255, 255)


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    """Pixels from one caption baseline to the next: the font's ascent plus descent."""
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    left, top, right, bottom = font.getbbox("Ag")  # the bitmap fallback font has no metrics
    return bottom + 1


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` pixels; words wider than a line are split by character.

    At most ``MAX_CAPTION_LINES`` lines; if text remains, the last line ends in an ellipsis.
    """

    def fits(candidate: str) -> bool:
        # The ink box, not the advance width: some glyphs reach past their advance or left of the origin.
        ink_left, _, ink_right, _ = font.getbbox(candidate)
        return ink_right - min(ink_left, 0) <= width

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        # A word wider than the tile is broken at the last character that fits.
        while not fits(word) and len(word) > 1:
            cut = 1
            while cut < len(word) and fits(word[: cut + 1]):
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    if len(lines) <= MAX_CAPTION_LINES:
        return lines
    last = lines[MAX_CAPTION_LINES - 1]
    while last and not fits(last + _ELLIPSIS):
        last = last[:-1]
    return lines[: MAX_CAPTION_LINES - 1] + [last.rstrip() + _ELLIPSIS]
