"""Training checkpoints: a folder per step, written atomically, the last K kept, no pickle anywhere.

Layout of ``<run>/checkpoints/step-00001000/``:
``model.safetensors`` (training weights), ``ema.safetensors`` (EMA weights), ``state.safetensors`` +
``state.json`` (optimizer, learning-rate schedule, RNG and data position: tensors in the safetensors file,
everything else as JSON with ``{"__tensor__": key}`` placeholders) and ``train_config.json``.

Atomicity: everything is written into ``step-XXXXXXXX.tmp-<pid>`` and fsynced, then the folder is renamed to
its final name in one ``os.rename`` (atomic on POSIX within a filesystem). A crash mid-write leaves only a
``.tmp-`` folder, which :func:`latest_checkpoint` ignores and :func:`remove_stale_temporaries` deletes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

STEP_PATTERN = re.compile(r"^step-(\d{8})$")
TENSOR_KEY = "__tensor__"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


# -- nested state (optimizer, schedulers, RNG) as JSON + safetensors ---------------------------------------


def flatten_state(state: Any) -> tuple[Any, dict[str, Tensor]]:
    """Split a nested structure of dicts/lists/scalars/tensors into a JSON-able skeleton and a flat tensor dict.
    Dict keys that are ints (optimizer state is keyed by parameter index) are kept as ``{"__int__": ...}``
    pairs so they come back as ints."""
    tensors: dict[str, Tensor] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, Tensor):
            tensors[path] = obj.detach().to("cpu").contiguous()
            return {TENSOR_KEY: path}
        if isinstance(obj, Mapping):
            if all(isinstance(k, str) for k in obj):
                return {k: walk(v, f"{path}.{k}") for k, v in obj.items()}
            return {"__items__": [[k, walk(v, f"{path}.{k}")] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store a {type(obj).__name__} at {path or 'top level'} in a checkpoint")

    return walk(state, "s"), tensors


def unflatten_state(skeleton: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of :func:`flatten_state` (lists stay lists; optimizers accept them where tuples were)."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {TENSOR_KEY}:
            return tensors[skeleton[TENSOR_KEY]]
        if set(skeleton) == {"__items__"}:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__items__"]}
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


# -- writing and finding checkpoints ----------------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: str | Path, step: int, weights: Mapping[str, Mapping[str, Tensor]], state: Any,
    config: Mapping[str, Any], keep: int,
) -> Path:
    """Write ``directory/step-XXXXXXXX`` atomically, then delete all but the newest ``keep`` checkpoints.

    ``weights`` maps a file stem (``model``, ``ema``) to a state dict; ``state`` is any nested structure of
    tensors and JSON values."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    temporary = directory / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    for stem, tensors in weights.items():
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, temporary / f"{stem}.safetensors")
    skeleton, state_tensors = flatten_state(state)
    save_file(state_tensors, temporary / "state.safetensors")
    (temporary / "state.json").write_text(json.dumps(skeleton) + "\n")
    (temporary / "train_config.json").write_text(json.dumps(config, indent=2) + "\n")
    for file in temporary.iterdir():
        _fsync(file)
    if final.exists():  # re-saving the same step (e.g. Ctrl-C right after a scheduled save): replace it
        shutil.rmtree(final)
    os.rename(temporary, final)
    _fsync(directory)
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and STEP_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_PATTERN.match(p.name).group(1)))


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete half-written ``.tmp-`` folders left by a crash; returns what was removed."""
    directory = Path(directory)
    stale = [p for p in directory.glob("step-*.tmp-*")] if directory.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def checkpoint_step(path: str | Path) -> int:
    match = STEP_PATTERN.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like step-00001000)")
    return int(match.group(1))


def load_checkpoint(path: str | Path) -> tuple[dict[str, dict[str, Tensor]], Any, dict[str, Any]]:
    """Read a checkpoint folder: ``(weights by stem, state, config dict)``."""
    path = Path(path)
    missing = [n for n in ("model.safetensors", "state.json", "state.safetensors", "train_config.json") if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    weights = {p.stem: load_file(p) for p in sorted(path.glob("*.safetensors")) if p.stem != "state"}
    state = unflatten_state(json.loads((path / "state.json").read_text()), load_file(path / "state.safetensors"))
    config = json.loads((path / "train_config.json").read_text())
    return weights, state, config


def rng_state() -> dict[str, Any]:
    """The global RNG states that layers draw from (dropout): CPU and, when present, every CUDA device."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def replace_folder(write, final: Path, temporary: Path) -> Path:
    """Write a folder with ``write(temporary)`` and swap it in for ``final``: the old one is renamed aside
    before the new one is renamed into place, so a crash never leaves a half-written ``final``."""
    shutil.rmtree(temporary, ignore_errors=True)
    write(temporary)
    aside = final.with_name(final.name + ".old")
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        os.rename(final, aside)
    os.rename(temporary, final)
    shutil.rmtree(aside, ignore_errors=True)
    return final
