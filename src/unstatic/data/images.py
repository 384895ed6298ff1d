"""Loading one image file and preparing it for training: decode, orient, flatten, resize, crop, flip.

Everything here works on one image at a time and holds no state, so a dataset can call it from any worker
process. Random choices come from a generator the caller seeds from ``(seed, epoch, index)``
(:func:`augmentation_rng`), which makes a sample the same however and wherever it is produced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin
from torch import Tensor

from unstatic.imaging import from_pil

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CROP_MODES = ("center", "random")

# EXIF orientations 5-8 are rotations by 90 or 270 degrees (with or without a mirror): width and height swap.
_EXIF_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
# Modes Pillow uses for 16-bit (or wider integer) grayscale; Pillow's own convert("L") clips these at 255
# instead of scaling them, so they are scaled here.
_WIDE_GRAY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_WHITE = (255, 255, 255, 255)


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` has one of the supported image extensions (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` as displayed (after EXIF orientation), from the file header only.

    Pillow's ``Image.open`` parses the header and defers decoding, so this is cheap enough to run on every
    file of a large folder. Raises whatever Pillow raises for a file it cannot identify.
    """
    with Image.open(path) as image:
        width, height = image.size
        if _header_orientation(image) in _SWAPPING_ORIENTATIONS:
            width, height = height, width
    return width, height


def _header_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation found without decoding pixels (``None`` when the header has none)."""
    if isinstance(image, PngImagePlugin.PngImageFile):
        # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixel data;
        # reading only chunks before it keeps the scan cheap (and orientation only swaps width and height).
        raw = image.info.get("exif")
        if raw is None:
            return None
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(_EXIF_ORIENTATION_TAG)
    return image.getexif().get(_EXIF_ORIENTATION_TAG)


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Decode an image file fully into an ``RGB`` (``channels=3``) or ``L`` (``channels=1``) PIL image.

    Applies the EXIF orientation, composites any transparency onto white, scales 16-bit grayscale to 8 bits,
    and converts palette, CMYK and other modes. Animated files (GIF, WebP, TIFF pages) give their first frame.
    Raises what Pillow raises for a corrupt or truncated file.
    """
    _check_channels(channels)
    with Image.open(path) as image:
        image.load()  # decode now, inside the `with`, so a truncated file fails here and the file closes
        image = ImageOps.exif_transpose(image)
        return flatten_image(image, channels)


def flatten_image(image: Image.Image, channels: int = 3) -> Image.Image:
    """Any PIL image to ``RGB`` or ``L``: transparency composited onto white, 16-bit gray scaled to 8 bits."""
    _check_channels(channels)
    target = "L" if channels == 1 else "RGB"
    if image.mode in _WIDE_GRAY_MODES:
        image = _wide_gray_to_l(image)
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        # Pillow's convert("RGBA") applies a palette's or a colour key's transparency; composite on white so
        # transparent regions look like paper rather than whatever colour hides under alpha = 0.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    elif image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, F...
    return image if image.mode == target else image.convert(target)


def _wide_gray_to_l(image: Image.Image) -> Image.Image:
    """16-bit grayscale to 8 bits by scaling 0..65535 onto 0..255 (``I`` is assumed to hold 16-bit values)."""
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size``, keeping the aspect ratio, with Lanczos resampling.

    Pillow's Lanczos filter widens its support when shrinking, so downscaling is antialiased. The
    ``reducing_gap=3.0`` first shrinks very large images by an integer box reduction, which Pillow documents
    as "indistinguishable from fair resampling in most cases" while being much faster.
    """
    width, height = image.size
    if min(width, height) == size:
        return image
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one sample's random choices: a function of ``(seed, epoch, index)`` alone.

    Seeding from the triple (rather than drawing from a shared stream) makes the result independent of call
    order and of which DataLoader worker asks, so a resumed run reproduces the same samples bit for bit.
    """
    return np.random.default_rng([seed, epoch, index])


def prepare_image(
    image: Image.Image,
    resolution: int,
    crop: str = "center",
    flip: bool = False,
    rng: np.random.Generator | None = None,
) -> Tensor:
    """An ``RGB`` or ``L`` image to a float32 ``[C, resolution, resolution]`` tensor in [-1, 1].

    Resizes the short side to ``resolution``, crops a square (``"center"``, or ``"random"`` offsets from
    ``rng``) and, when ``flip``, mirrors left-right with probability 1/2 (drawn from ``rng``). ``rng`` is
    needed only for random choices; draws happen in a fixed order: crop left, crop top, flip.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    if (crop == "random" or flip) and rng is None:
        raise ValueError("a random crop or flip needs rng (see augmentation_rng)")
    image = resize_short_side(image, resolution)
    width, height = image.size
    if crop == "random":
        left, top = int(rng.integers(0, width - resolution + 1)), int(rng.integers(0, height - resolution + 1))
    else:
        left, top = (width - resolution) // 2, (height - resolution) // 2
    if (left, top, width, height) != (0, 0, resolution, resolution):
        image = image.crop((left, top, left + resolution, top + resolution))
    if flip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return from_pil(image)


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
