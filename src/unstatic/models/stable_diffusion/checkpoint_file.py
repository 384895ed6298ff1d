"""Reading a checkpoint file's tensors safely, with errors that name the file.

``.safetensors`` is read as is. Pickled ``.ckpt``/``.pt``/``.pth``/``.bin`` files are opened only with
``torch.load(weights_only=True)``, PyTorch's restricted unpickler that builds tensors and plain containers
and nothing else; a file that needs more (arbitrary classes, which could run code on load) is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor

from unstatic.networks.safetensors_reader import read_safetensors

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a checkpoint file (metadata: the safetensors header's, else empty)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path)  # errors name the file, the tensor and whether it is truncated
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle(path), {}
    raise ValueError(f"{path}: unknown checkpoint type {suffix!r}; expected .safetensors or {', '.join(PICKLE_SUFFIXES)}")


def _read_pickle(path: Path) -> dict[str, Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} is refused: it needs arbitrary unpickling, which can run any code stored in the file, and "
            f"unstatic only unpickles tensors (torch.load(weights_only=True)). PyTorch said: {reason}. Ask for a "
            ".safetensors version of the checkpoint, or convert it where you trust the file."
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error}); it may be truncated or corrupt") from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # Lightning checkpoints keep the weights one level down
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a state dict")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, Tensor)}
