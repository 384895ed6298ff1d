"""Images over HTTP as A1111 sends them: base64 PNG strings. Input may carry a ``data:image/...;base64,``
prefix (browsers' data URLs; the ``webuiapi`` client sends one for img2img); output never does, because
clients decode the string as it is."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, UnidentifiedImageError
from torch import Tensor

from unstatic.imaging import to_pil
from unstatic.pipelines.infotext import png_info
from unstatic.server.errors import ApiError

# A decoded image larger than this is refused before PIL allocates it: the API's largest size is 2048 x 2048,
# and an init image a few times larger still resizes fine, but a 40-byte PNG header can claim 10^9 pixels.
MAX_INPUT_PIXELS = 4096 * 4096


def decode_image(data: str, field: str = "image") -> Image.Image:
    """A base64 string (with or without a ``data:`` prefix) to a loaded PIL image, or a 400 naming ``field``."""
    if not isinstance(data, str) or not data.strip():
        raise ApiError(400, "bad image", f"{field}: expected a base64-encoded image, got an empty value")
    text = data.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise ApiError(400, "bad image", f"{field}: only base64 data URLs are accepted, got {header!r}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad base64", f"{field}: not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise ApiError(400, "image too large", f"{field}: {image.width}x{image.height} is larger than "
                               f"{MAX_INPUT_PIXELS} pixels")
            image.load()
            return image.copy()
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        # SyntaxError: some PIL plugins (e.g. PSD, GIF) report malformed headers that way
        raise ApiError(400, "not an image", f"{field}: the data decodes but is not an image PIL can read") from None


def encode_png(image: Image.Image, infotext: str | None = None) -> str:
    """A PIL image to a raw base64 PNG string (no ``data:`` prefix), with ``infotext`` in the PNG's
    ``parameters`` chunk as A1111 writes it, so ``/png-info`` and image browsers can read it back."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(infotext) if infotext else None)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def read_infotext(image: Image.Image) -> str | None:
    """The ``parameters`` text an image carries (PNG text chunk), or None."""
    text = getattr(image, "text", None) or image.info
    value = text.get("parameters") if text else None
    return value if isinstance(value, str) else None


def preview_image(estimate: Tensor) -> Image.Image | None:
    """A clean estimate (``[C, H, W]`` in [-1, 1]) as a PIL image; None when it is not an image (a latent model's
    estimate has other channel counts)."""
    if estimate.ndim != 3 or estimate.shape[0] not in (1, 3):
        return None
    return to_pil(estimate)
