"""Reading ``.safetensors`` files into freshly allocated tensors with plain reads (no memory map).

``safetensors.torch.load_file`` returns tensors backed by a private memory map of the file. Every page a copy
touches stays resident until the *last* tensor of the file is freed, so copying a file's tensors into a model
holds the file twice: an SD 1.5 U-Net (3.4 GB) loaded that way peaked at 6.7 GiB RSS. Reading each tensor
straight into its own ``torch.empty`` buffer with ``readinto`` holds it once, gives aligned memory, and lets a
loader free each tensor as soon as it is copied.

The format (https://github.com/huggingface/safetensors#format): an 8-byte little-endian header length ``N``,
``N`` bytes of JSON mapping each name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative
to the end of the header) plus an optional ``"__metadata__"`` of strings, then the data. Every entry is checked
against the file's size before anything is read, so a truncated download is reported with the file and the
first tensor it cuts off, not as a crash half-way through loading.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import torch
from torch import Tensor

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
MAX_HEADER_BYTES = 100 * 2**20  # the reference implementation's limit: a larger "header" is a file of another kind


class SafetensorsReadError(ValueError):
    """The file is not a readable safetensors file: the message names the file and, where one is at fault, the tensor."""


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, each tensor in its own freshly allocated, contiguous memory."""
    path = Path(path)
    if sys.byteorder != "little":  # the format stores little-endian data; let the reference library byte-swap
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            return {k: handle.get_tensor(k).clone() for k in handle.keys()}, dict(handle.metadata() or {})
    with open(path, "rb") as file:
        entries, metadata, data_start = _read_header(path, file)
        tensors = {}
        for name, (dtype, shape, begin, end) in entries.items():
            tensor = torch.empty(shape, dtype=dtype)
            if end > begin:
                file.seek(data_start + begin)
                view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
                if file.readinto(view) != end - begin:
                    raise _unreadable(path, f"the data of tensor {name!r} ends early: it is truncated")
            tensors[name] = tensor
    return tensors, metadata


def _read_header(path: Path, file) -> tuple[dict[str, tuple[torch.dtype, list[int], int, int]], dict[str, str], int]:
    """Parse and check the header: ``({name: (dtype, shape, begin, end)}, metadata, offset of the data)``."""
    size = path.stat().st_size
    prefix = file.read(8)
    if len(prefix) != 8:
        raise _unreadable(path, f"it is only {size} bytes long (truncated?)")
    (header_bytes,) = struct.unpack("<Q", prefix)
    if header_bytes > min(MAX_HEADER_BYTES, size - 8):
        raise _unreadable(path, f"its first 8 bytes give a header of {header_bytes} bytes in a file of {size}; "
                                 "it may be truncated or of another kind")
    try:
        header = json.loads(file.read(header_bytes))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _unreadable(path, f"its header is not JSON ({error})") from error
    if not isinstance(header, dict):
        raise _unreadable(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_bytes
    entries = {}
    for name, entry in header.items():
        if isinstance(entry, dict) and entry.get("dtype") not in DTYPES:
            raise _unreadable(path, f"tensor {name!r} has dtype {entry.get('dtype')!r} (known: {', '.join(DTYPES)})")
        try:
            dtype, shape = DTYPES[entry["dtype"]], [int(n) for n in entry["shape"]]
            begin, end = (int(offset) for offset in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise _unreadable(path, f"tensor {name!r} has a malformed header entry {entry!r}") from error
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected or begin < 0 or min(shape, default=0) < 0:
            raise _unreadable(path, f"tensor {name!r} ({entry['dtype']} {shape}) spans {end - begin} bytes, "
                                 f"not {expected}: it is corrupt")
        if data_start + end > size:
            raise _unreadable(path, f"it is truncated (tensor {name!r} needs bytes up to {data_start + end}, the "
                                 f"file has {size}: an interrupted download?)")
        entries[name] = (dtype, shape, begin, end)
    return entries, {str(k): str(v) for k, v in metadata.items()}, data_start


def _unreadable(path: Path, reason: str) -> SafetensorsReadError:
    return SafetensorsReadError(f"{path} is not a readable safetensors file: {reason}")
