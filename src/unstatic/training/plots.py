"""The loss-curve PNG: raw values as a light line, a smoothed darker line on top, steps along x.

Drawn with Pillow alone (no matplotlib) at twice the requested size and then box-downsampled, which
anti-aliases lines and text. The y axis is logarithmic when asked and every plotted value is positive.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from unstatic.training.metrics import DebiasedEma, write_atomically

_SUPERSAMPLE = 2  # draw at 2x, then downsample 2x2 blocks: cheap anti-aliasing for Pillow's aliased lines
_FONT_SIZE, _TITLE_SIZE = 12, 15
_MARGIN_TOP, _MARGIN_RIGHT, _MARGIN_BOTTOM = 40, 24, 46
_BACKGROUND = (255, 255, 255)
_GRID, _FRAME, _TEXT, _MUTED = (232, 234, 238), (150, 154, 160), (30, 32, 36), (105, 110, 118)
_RAW, _SMOOTHED = (165, 195, 232), (25, 75, 160)
_MIN_SIZE = (200, 150)


def plot_loss_curve(
    records: Sequence[Mapping],
    path: str | Path,
    key: str = "loss",
    smoothing: float = 0.98,
    log_y: bool = True,
    title: str | None = None,
    size: tuple[int, int] = (800, 480),
) -> Path:
    """Plot ``record[key]`` against ``record["step"]`` to a PNG at ``path`` (written atomically); return the path.

    Records without ``key`` or with a non-finite value are skipped; records are ordered by step. The
    smoothed line is a bias-corrected exponential moving average (:class:`DebiasedEma`, Kingma & Ba 2015,
    Algorithm 1) with decay ``smoothing``. ``log_y`` uses a log-scale y axis when every value is positive
    (else linear). Zero or one usable records give an empty or one-point plot, never an error.
    """
    width, height = _check_size(size)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    points = _finite_points(records, key)
    ema = DebiasedEma(smoothing)
    smoothed = [(step, ema.update(value)) for step, value in points]
    log_scale = bool(log_y and points and all(value > 0 for _, value in points))

    image = _draw(points, smoothed, key, smoothing, log_scale, title if title is not None else key, width, height)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomically(path, buffer.getvalue())
    return Path(path)


def _draw(points, smoothed, key, smoothing, log_scale, title, width, height) -> Image.Image:
    """Render the figure; all layout numbers are in output pixels and multiplied by ``_SUPERSAMPLE`` here."""
    s = _SUPERSAMPLE
    font = ImageFont.load_default(size=_FONT_SIZE * s)
    title_font = ImageFont.load_default(size=_TITLE_SIZE * s)
    image = Image.new("RGB", (width * s, height * s), _BACKGROUND)
    draw = ImageDraw.Draw(image)

    steps = [step for step, _ in points]
    values = [value for _, value in points] + [value for _, value in smoothed]
    x_low, x_high = _padded_range(min(steps, default=0.0), max(steps, default=1.0), log_scale=False, pad=0.0)
    transform = math.log10 if log_scale else float
    y_low, y_high = _padded_range(min(values, default=0.0), max(values, default=1.0), log_scale, pad=0.05)
    x_ticks = _linear_ticks(x_low, x_high, target=6, min_spacing=1.0)
    y_ticks = _log_ticks(y_low, y_high) if log_scale else _linear_ticks(y_low, y_high, target=5)
    y_labels = [_format_tick(value, _tick_spacing(y_ticks, log_scale)) for value in y_ticks]
    x_labels = [_format_tick(value, _tick_spacing(x_ticks, False)) for value in x_ticks]

    label_width = max((draw.textlength(label, font=font) for label in y_labels), default=0) / s
    left, right = round(label_width) + 16, width - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, height - _MARGIN_BOTTOM
    if right - left < 20 or bottom - top < 20:
        raise ValueError(f"size {(width, height)} leaves no room for the plot area")

    def to_px(step: float, value: float) -> tuple[float, float]:
        fx = (step - x_low) / (x_high - x_low)
        fy = (transform(value) - transform(y_low)) / (transform(y_high) - transform(y_low))
        return (left + fx * (right - left)) * s, (bottom - fy * (bottom - top)) * s

    # Grid and tick labels.
    for value, label in zip(y_ticks, y_labels):
        _, y = to_px(x_low, value)
        draw.line([(left * s, y), (right * s, y)], fill=_GRID, width=s)
        _text(draw, ((left - 8) * s, y), label, font, _MUTED, anchor="rm")
    for value, label in zip(x_ticks, x_labels):
        x, _ = to_px(value, y_low)
        draw.line([(x, top * s), (x, bottom * s)], fill=_GRID, width=s)
        _text(draw, (x, (bottom + 6) * s), label, font, _MUTED, anchor="mt")
    draw.rectangle([left * s, top * s, right * s, bottom * s], outline=_FRAME, width=s)

    # Data: the light raw series first, the smoothed line over it.
    if points:
        raw_px = _thin([to_px(step, value) for step, value in points])
        if len(raw_px) > 1:
            draw.line(raw_px, fill=_RAW, width=s, joint="curve")
        if len(points) <= (right - left) // 4:  # sparse enough that each point reads as a dot
            for x, y in raw_px:
                draw.ellipse([x - 2 * s, y - 2 * s, x + 2 * s, y + 2 * s], fill=_RAW)
        smooth_px = _thin([to_px(step, value) for step, value in smoothed])
        if len(smooth_px) > 1:
            draw.line(smooth_px, fill=_SMOOTHED, width=2 * s, joint="curve")
        else:
            (x, y), r = smooth_px[0], 3 * s
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_SMOOTHED)
    else:
        message = f"no finite {key!r} values yet"
        _text(draw, ((left + right) / 2 * s, (top + bottom) / 2 * s), message, font, _MUTED, anchor="mm")

    # Header: title on the left, the latest values on the right.
    _text(draw, (left * s, top / 2 * s), title, title_font, _TEXT, anchor="lm")
    if points:
        summary = f"step {points[-1][0]:,}   last {_format_value(points[-1][1])}"
        summary += f"   smoothed {_format_value(smoothed[-1][1])}"
        _text(draw, (right * s, top / 2 * s), summary, font, _MUTED, anchor="rm")

    # Footer: x-axis name in the middle, legend on the left, y scale on the right.
    footer_y = (height - 12) * s
    _text(draw, ((left + right) / 2 * s, footer_y), "step", font, _MUTED, anchor="mm")
    x = left * s
    for color, line_width, label in ((_RAW, 1, "raw"), (_SMOOTHED, 2, f"smoothed (EMA {smoothing:g})")):
        draw.line([(x, footer_y), (x + 18 * s, footer_y)], fill=color, width=line_width * s)
        x += 24 * s
        x = _text(draw, (x, footer_y), label, font, _MUTED, anchor="lm") + 16 * s
    _text(draw, (right * s, footer_y), "log scale" if log_scale else "linear scale", font, _MUTED, anchor="rm")

    return image.reduce(s)


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    """``(width, height)`` as ints no smaller than ``_MIN_SIZE``, or a ValueError naming the bad size."""
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < _MIN_SIZE[0] or height < _MIN_SIZE[1]:
        raise ValueError(f"size must be at least {_MIN_SIZE}, got {(width, height)}")
    return width, height


def _finite_points(records: Sequence[Mapping], key: str) -> list[tuple[int | float, float]]:
    """``(step, value)`` for records that have a finite step and a finite numeric ``key``, sorted by step."""
    points = []
    for record in records:
        step, value = record.get("step"), record.get(key)
        if isinstance(step, bool) or isinstance(value, bool):
            continue
        if isinstance(step, (int, float)) and isinstance(value, (int, float)):
            if math.isfinite(step) and math.isfinite(value):
                points.append((step, float(value)))
    points.sort(key=lambda point: point[0])  # stable: equal steps keep file order
    return points


def _padded_range(low: float, high: float, log_scale: bool, pad: float) -> tuple[float, float]:
    """``[low, high]`` widened by ``pad`` of its span (in log space on a log axis); never zero-width."""
    if log_scale:
        low_exp, high_exp = _padded_range(math.log10(low), math.log10(high), log_scale=False, pad=pad)
        return 10.0**low_exp, 10.0**high_exp
    span = high - low
    if span <= 0:
        # One value: show it in the middle of a range scaled to its size (or +-1 around zero).
        half = abs(low) * 0.1 if low != 0 else 1.0
        return low - half, high + half
    return low - pad * span, high + pad * span


def _nice_number(value: float, round_to_nearest: bool) -> float:
    """1, 2, 5 or 10 times a power of ten near ``value`` (Heckbert 1990, "Nice numbers for graph labels")."""
    exponent = math.floor(math.log10(value))
    fraction = value / 10.0**exponent
    if round_to_nearest:
        nice = 1 if fraction < 1.5 else 2 if fraction < 3 else 5 if fraction < 7 else 10
    else:
        nice = 1 if fraction <= 1 else 2 if fraction <= 2 else 5 if fraction <= 5 else 10
    return nice * 10.0**exponent


def _linear_ticks(low: float, high: float, target: int, min_spacing: float = 0.0) -> list[float]:
    """About ``target`` evenly spaced nice tick values inside ``[low, high]`` (Heckbert 1990, tight labelling).

    ``min_spacing`` keeps ticks apart, e.g. 1 on a step axis, where ticks between integers would be noise.
    """
    spacing = max(_nice_number(_nice_number(high - low, False) / (target - 1), True), min_spacing)
    first = math.ceil(low / spacing - 1e-9)
    last = math.floor(high / spacing + 1e-9)
    return [index * spacing for index in range(first, last + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    """Ticks for a log axis over ``[low, high]`` (both > 0): decades, or 1-2-5 steps, or linear ticks.

    Whichever is the first to put at least three ticks inside the range, thinned to at most eight; a range
    under a factor of ~3 falls back to linear nice ticks, which still read well on a short log axis.
    """
    first_exp, last_exp = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for mantissas in ((1,), (1, 2, 5)):
        ticks = [
            float(f"{m}e{e}") for e in range(first_exp, last_exp + 1) for m in mantissas
        ]  # from text, so 2e-3 is exactly the float that prints as 0.002
        ticks = [t for t in ticks if low <= t <= high]
        if len(ticks) >= 3:
            stride = math.ceil(len(ticks) / 8)
            return ticks[::stride]
    return [t for t in _linear_ticks(low, high, target=5) if t > 0]


def _tick_spacing(ticks: Sequence[float], log_scale: bool) -> float | None:
    """The step between linear ticks, which sets how many decimals their labels need; None on a log axis."""
    if log_scale or len(ticks) < 2:
        return None
    return ticks[1] - ticks[0]


def _format_tick(value: float, spacing: float | None) -> str:
    """A short tick label: rounded to the tick spacing, thousands as ``k`` and millions as ``M``."""
    if spacing is not None:
        value = round(value, max(0, -math.floor(math.log10(spacing) + 1e-9)))
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    return _format_value(value)


def _format_value(value: float) -> str:
    """Four significant digits, with exponents written short (``1e-5`` rather than ``1e-05``)."""
    text = f"{value:.4g}"
    return text.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Keep, per pixel column, the first, lowest, highest and last point (in time order).

    A 100k-step log becomes a few thousand vertices, drawn fast, while every spike stays visible.
    """
    if len(points) <= 4 * 2048:
        return points
    thinned: list[tuple[float, float]] = []
    column: list[tuple[float, float]] = []

    def flush() -> None:
        keep = {0, len(column) - 1}
        keep.add(min(range(len(column)), key=lambda i: column[i][1]))
        keep.add(max(range(len(column)), key=lambda i: column[i][1]))
        thinned.extend(column[i] for i in sorted(keep))
        column.clear()

    for point in points:
        if column and math.floor(point[0]) != math.floor(column[0][0]):
            flush()
        column.append(point)
    flush()
    return thinned


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill, anchor: str) -> float:
    """Draw ``text`` anchored at ``xy`` (``l/m/r`` + ``t/m``, as Pillow's anchors); return its right edge.

    Positions come from the text's bounding box, so this also works with Pillow's bitmap fallback font,
    which does not support anchors.
    """
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_width, text_height = right - left, bottom - top
    x = xy[0] - {"l": 0, "m": text_width / 2, "r": text_width}[anchor[0]] - left
    y = xy[1] - {"t": 0, "m": text_height / 2}[anchor[1]] - top
    draw.text((x, y), text, font=font, fill=fill)
    return x + left + text_width
