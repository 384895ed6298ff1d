"""Exact 2-D signed distance functions of the eight shapes, vectorised over pixel grids.

Each function takes pixel offsets ``(x, y)`` from the shape's bounding-box centre (x right, **y down**, in
pixels; arrays that broadcast) and ``r``, the half side of the bounding box in pixels, and returns the signed
distance in pixels to the outline: negative inside, positive outside. Every shape fills as much of its
``2r x 2r`` box as its proportions allow, so "the same size" means "the same bounding box".

The formulas are Inigo Quilez's exact 2-D SDFs ("2D distance functions", iquilezles.org/articles/distfunctions2d:
sdCircle, sdBox, sdEquilateralTriangle, sdStar5, sdHeart, sdRhombus as a rotated box, sdCross as a union of
boxes, and the annulus ``|sdCircle| - thickness``), transcribed to numpy with the shader branches as ``where``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

SQRT3 = math.sqrt(3.0)
STAR_INNER_RATIO = 0.45  # inner/outer vertex radius; 0.38 is the regular pentagram, 0.45 reads better when tiny
CROSS_HALF_THICKNESS = 0.36  # arm half-thickness as a fraction of r: arms stay ~2 px wide at 32x32
RING_INNER_RATIO = 0.5  # hole radius / outer radius: the hole stays visible for a small ring at 32x32


def box(x: np.ndarray, y: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    """Axis-aligned rectangle (Quilez sdBox): outside, distance to the nearest point; inside, minus the depth."""
    dx = np.abs(x) - half_w
    dy = np.abs(y) - half_h
    return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)


def circle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Disc of radius ``r`` (Quilez sdCircle: ``|p| - r``)."""
    return np.hypot(x, y) - r


def square(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Square of half side ``r``."""
    return box(x, y, r, r)


def diamond(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Square rotated by 45 degrees with half diagonal ``r``: a box of half side ``r / sqrt 2`` in rotated axes."""
    s = 1 / math.sqrt(2)
    return box((x + y) * s, (y - x) * s, r * s, r * s)


def cross(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Plus sign: the union (min) of a horizontal and a vertical bar of half length ``r``.

    The min of two SDFs is exact outside the union, which is all anti-aliasing needs.
    """
    t = CROSS_HALF_THICKNESS * r
    return np.minimum(box(x, y, r, t), box(x, y, t, r))


def ring(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Annulus of outer radius ``r`` and inner radius ``RING_INNER_RATIO * r``: ``| |p| - mid | - half_width``."""
    half_width = (1 - RING_INNER_RATIO) * r / 2
    return np.abs(np.hypot(x, y) - (r - half_width)) - half_width


def triangle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Equilateral triangle, apex up, side ``2r`` (Quilez sdEquilateralTriangle, half side ``r``).

    Quilez's triangle is centred on its centroid with y up; its bounding box's centre lies ``r / (2 sqrt 3)``
    above the centroid, hence the shift.
    """
    px = np.abs(x) - r
    py = -y + r / (2 * SQRT3) + r / SQRT3
    fold = px + SQRT3 * py > 0
    qx = np.where(fold, (px - SQRT3 * py) / 2, px)
    qy = np.where(fold, (-SQRT3 * px - py) / 2, py)
    qx = qx - np.clip(qx, -2 * r, 0)
    return -np.hypot(qx, qy) * np.sign(qy)


def star(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Five-pointed star, one point up (Quilez sdStar5): two mirror folds map the plane onto one spike.

    Its outer radius is ``r / sin 72deg`` so that its width is ``2r``; its height (apex to the lower points,
    ``(1 + cos 36deg)`` outer radii) is then slightly less, and the bounding box is centred vertically.
    """
    outer = r / math.sin(math.radians(72))
    k1x, k1y = math.cos(math.radians(36)), -math.sin(math.radians(36))
    px = np.abs(x)
    py = -y + outer * (1 - math.cos(math.radians(36))) / 2
    for kx, ky in ((k1x, k1y), (-k1x, k1y)):  # reflect across the two mirror lines of the fundamental spike
        d = 2 * np.maximum(kx * px + ky * py, 0)
        px, py = px - d * kx, py - d * ky
    px = np.abs(px)
    py = py - outer
    bax, bay = -STAR_INNER_RATIO * k1y * outer, STAR_INNER_RATIO * k1x * outer - outer
    h = np.clip((px * bax + py * bay) / (bax * bax + bay * bay), 0, 1)
    return np.hypot(px - bax * h, py - bay * h) * np.sign(py * bax - px * bay)


def heart(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Heart, point down (Quilez sdHeart): two circular lobes of radius ``sqrt2 / 4`` centred at ``(+-1/4, 3/4)``
    joined by straight edges to the tip at the origin. Its width, ``1/2 + sqrt2 / 2``, is scaled to ``2r``."""
    half_width = 0.25 + math.sqrt(2) / 4
    scale = r / half_width
    height = 0.75 + math.sqrt(2) / 4
    px = np.abs(x) / scale
    py = -y / scale + height / 2
    lobe = np.hypot(px - 0.25, py - 0.75) - math.sqrt(2) / 4
    m = 0.5 * np.maximum(px + py, 0)
    edge = np.sqrt(np.minimum(px * px + (py - 1) ** 2, (px - m) ** 2 + (py - m) ** 2)) * np.sign(px - py)
    return np.where(px + py > 1, lobe, edge) * scale


SDFS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "circle": circle,
    "square": square,
    "triangle": triangle,
    "star": star,
    "heart": heart,
    "diamond": diamond,
    "cross": cross,
    "ring": ring,
}
