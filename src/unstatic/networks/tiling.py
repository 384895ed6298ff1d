"""Tiled evaluation of resolution-changing image networks (a VAE's encoder or decoder) in bounded memory.

``tiled_map(fn, x, scale, tile_size, tile_overlap)`` cuts ``x`` ([B, C, H, W]) into overlapping tiles, maps
each with ``fn`` (which must turn an ``h x w`` tile into an ``h*scale x w*scale`` one; ``scale`` may be a
fraction such as 1/8 for an encoder) and blends the results. In the overlaps each tile's weight rises
linearly from 0 at its edge to 1 over the width of the overlap with its neighbour, and the output is the
weighted average, so a tile's contribution fades out to zero at its edge instead of stopping at a seam. At
image borders the weight stays 1. With two tiles over an overlap the weights sum to one exactly; where more
meet, dividing by the summed weight keeps the average well defined.

Peak memory is that of ``fn`` on one tile plus the blended output; the result cannot be bit-identical to
``fn(x)`` for networks whose layers see the whole image (GroupNorm statistics, attention), which is the
point of the overlap: differences show up as a smooth drift, not as an edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import torch
from torch import Tensor

__all__ = ["tile_spans", "tiled_map"]


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """``[start, end)`` of the tiles covering ``range(length)``: as few tiles as keep every overlap at least
    ``overlap`` wide, spread evenly, starts on multiples of ``align``; the last tile ends at ``length``."""
    if length <= tile:
        return [(0, length)]
    step = tile - overlap
    count = math.ceil((length - tile) / step) + 1
    # floor(i * d / align) * align with d <= step keeps consecutive starts at most ``step`` apart, since
    # step is a multiple of align; the last start is length - tile, itself a multiple of align.
    starts = [((length - tile) * i // (count - 1)) // align * align for i in range(count)]
    return [(s, s + tile) for s in starts]


def _ramp(distance: Tensor, overlap: int) -> Tensor:
    """Linear ramp over an overlap of ``overlap`` cells: 0 on a tile's edge cell, 1 on the neighbour's edge
    cell, so the two tiles' weights sum to one across the overlap and each tile fades out continuously."""
    if overlap == 1:
        return torch.full_like(distance, 0.5)
    return (distance / (overlap - 1)).clamp(max=1.0)


def _feather(spans: list[tuple[int, int]], k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1-D blending weight of tile ``k``: ramps over the overlaps with its neighbours, 1 elsewhere."""
    start, end = spans[k]
    distance = torch.arange(end - start, dtype=torch.float64, device=device)
    weight = torch.ones(end - start, dtype=torch.float64, device=device)
    if k > 0 and spans[k - 1][1] > start:
        weight = torch.minimum(weight, _ramp(distance, spans[k - 1][1] - start))
    if k + 1 < len(spans) and spans[k + 1][0] < end:
        weight = torch.minimum(weight, _ramp(distance.flip(0), end - spans[k + 1][0]))
    return weight.to(dtype)


def tiled_map(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    scale: int | float | Fraction,
    tile_size: int | tuple[int, int],
    tile_overlap: int | tuple[int, int],
) -> Tensor:
    """Apply ``fn`` to overlapping ``tile_size`` tiles of ``x`` ([B, C, H, W]) and blend the outputs.

    ``tile_size`` and ``tile_overlap`` are in units of ``x`` (pixels for an encoder, latent cells for a
    decoder), as ints or ``(height, width)`` pairs. When ``scale`` is a fraction ``p/q``, tile sizes,
    overlaps and ``H``, ``W`` must be multiples of ``q`` so that tiles land on whole output cells. A side no
    longer than the tile is processed whole, so ``tiled_map`` with a tile as large as the image is ``fn(x)``.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
    ratio = Fraction(scale).limit_denominator(1 << 16)
    if ratio <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    align = ratio.denominator
    tile = _pair(tile_size, "tile_size")
    overlap = _pair(tile_overlap, "tile_overlap")
    size = tuple(x.shape[-2:])
    for axis, t, o, n in zip(("height", "width"), tile, overlap, size):
        if t <= 0 or o < 0 or o >= t:
            raise ValueError(f"need 0 <= tile_overlap < tile_size, got tile {t} and overlap {o} ({axis})")
        if t % align or o % align:
            raise ValueError(f"tile_size {t} and tile_overlap {o} ({axis}) must be multiples of {align} at scale {ratio}")
        if n % align:
            raise ValueError(f"input {axis} {n} is not a multiple of {align}, needed at scale {ratio}")
    spans_in = [tile_spans(n, t, o, align) for n, t, o in zip(size, tile, overlap)]
    if len(spans_in[0]) == 1 and len(spans_in[1]) == 1:
        return fn(x)
    spans_out = [[(int(s * ratio), int(e * ratio)) for s, e in spans] for spans in spans_in]

    out = weight_sum = None
    for i, (top, bottom) in enumerate(spans_in[0]):
        for j, (left, right) in enumerate(spans_in[1]):
            y = fn(x[:, :, top:bottom, left:right])
            (top_o, bottom_o), (left_o, right_o) = spans_out[0][i], spans_out[1][j]
            if y.ndim != 4 or y.shape[-2:] != (bottom_o - top_o, right_o - left_o):
                raise ValueError(
                    f"fn mapped a {bottom - top}x{right - left} tile to shape {tuple(y.shape)}; "
                    f"expected spatial size {bottom_o - top_o}x{right_o - left_o} at scale {ratio}"
                )
            if out is None:
                out_size = (int(size[0] * ratio), int(size[1] * ratio))
                out = y.new_zeros(*y.shape[:2], *out_size)
                weight_sum = y.new_zeros(out_size)
            w = _feather(spans_out[0], i, y.dtype, y.device)[:, None] * _feather(spans_out[1], j, y.dtype, y.device)
            out[:, :, top_o:bottom_o, left_o:right_o] += y * w
            weight_sum[top_o:bottom_o, left_o:right_o] += w
    return out / weight_sum
