"""Saving and loading networks: our folder format and diffusers' (safetensors only; nothing is ever unpickled).

Our format is a folder with ``config.json`` (the model's frozen config dataclass as JSON, plus ``"type"`` and
``"version"``) and ``model.safetensors`` (the state dict). Any ``nn.Module`` works that

* is built as ``ModelClass(config)``, keeps that config as ``model.config`` and names its config class in
  ``ModelClass.config_class``;
* has a config class that is a dataclass with class attributes ``TYPE`` (a short name, e.g. ``"unet"``) and
  ``VERSION`` (an int, raised when the meaning of a saved config changes).

Loading checks every key both ways and every shape before touching the model, and names what does not match.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from unstatic.networks.memory_format import use_channels_last
from unstatic.networks.safetensors_reader import read_safetensors

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def model_classes() -> dict[str, type[nn.Module]]:
    """Config ``"type"`` → model class: the models :func:`load_model` can build from a folder alone.
    Imported here rather than at the top because the model modules import this one."""
    from unstatic.networks.unet import UNet
    from unstatic.networks.vae import AutoencoderKL

    return {UNet.config_class.TYPE: UNet, AutoencoderKL.config_class.TYPE: AutoencoderKL}


# -- configs --------------------------------------------------------------------------------------------


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict: ``type`` and ``version`` first, then every field (tuples as lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}")
    fields = {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return {"type": type(config).TYPE, "version": type(config).VERSION, **fields}


def strip_type_and_version(config_class: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without its ``type`` and ``version``, after checking that the type is ``config_class.TYPE`` and
    the version is one ``config_class`` can read."""
    data = dict(data)
    kind, version = data.pop("type", None), data.pop("version", None)
    if kind != config_class.TYPE:
        raise ValueError(f"config is of type {kind!r}, expected {config_class.TYPE!r}")
    if not isinstance(version, int) or version > config_class.VERSION:
        raise ValueError(f"config version {version!r} is not supported (this code reads versions up to {config_class.VERSION})")
    return data


def config_from_dict(config_class: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config saved by :func:`config_to_dict`; its ``type`` must match and its ``version`` must not
    be newer than ``config_class`` knows. Unknown fields are an error (they would be silently dropped)."""
    data = strip_type_and_version(config_class, data)
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} fields in config: {unknown}")
    return config_class(**{k: _tuples(v) for k, v in data.items()})


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# -- state dicts ----------------------------------------------------------------------------------------


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Raise a ValueError listing missing keys, unexpected keys and shape mismatches, if there are any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: {tuple(state_dict[k].shape)} in {source}, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
            problems.append(f"{len(items)} {title}: {shown}")
    if problems:
        raise ValueError(f"{source} does not fit {type(model).__name__}; " + "; ".join(problems))


def build_with_weights(
    model_class: type[nn.Module], config: Any, state_dict: Mapping[str, Tensor], source: str = "checkpoint",
    dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> nn.Module:
    """``model_class(config)`` holding exactly ``state_dict`` (strict: every key, every shape).

    The model is built on the meta device, so no time goes into random initialisation of weights that are
    about to be replaced; floating-point tensors are cast to ``dtype`` (default: as stored), and all are copied
    to ``device``. A ``dict`` is emptied as its tensors are copied (the loaders hand over a dict nobody else
    keeps, read by :func:`read_safetensors` so that each tensor owns its memory and is freed once copied), and
    the model's layout is converted after the copies are dropped. An SD 1.5 float32 load peaked at 6.7 GiB RSS
    with ``safetensors.torch.load_file`` (one memory map, freed only with the last tensor) and 4.2 GiB with this,
    for 4.0 GiB of weights."""
    with torch.device("meta"):
        model = model_class(config)
    check_state_dict(model, state_dict, source)
    # Copy, whatever the source: callers may keep references to the given tensors, and tensors viewing a
    # memory-mapped file can be misaligned, which sends CPU kernels down a different path (results differ in the
    # last bit from the model that was saved). The copy costs one tensor of transient memory at a time.
    tensors = {}
    for key in list(state_dict):
        value = state_dict.pop(key) if isinstance(state_dict, dict) else state_dict[key]
        cast = dtype if dtype is not None and value.is_floating_point() else None
        tensors[key] = value.to(device=device, dtype=cast, copy=True)
    model.load_state_dict(tensors, strict=True, assign=True)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a buffer outside the state dict (non-persistent): build normally instead
        model = model_class(config)
        model.load_state_dict(tensors, strict=True)
        if device is not None:
            model.to(device)
    del tensors  # the model holds them now; converting layouts below must free each NCHW original as it goes
    if getattr(model, "_plain_state_dict_hook", False):  # assign=True took the stored NCHW layout: restore channels-last
        use_channels_last(model)
    return model.eval()


# -- our format -----------------------------------------------------------------------------------------


STORED_AS_KEY = "stored_as"  # safetensors metadata: the weights were narrowed to this dtype for storage only
STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def save_model(model: nn.Module, folder: str | Path, storage_dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created if needed).

    ``storage_dtype`` (float16 or bfloat16) halves the file for shipping; :func:`load_model` widens such weights
    back to float32 unless asked for another dtype, so the model computes exactly as a float32 model whose
    weights were rounded once."""
    folder = Path(folder)
    stored_as = {v: k for k, v in STORAGE_DTYPES.items()}.get(storage_dtype) if storage_dtype is not None else None
    if storage_dtype is not None and stored_as is None:
        raise ValueError(f"storage_dtype must be one of {', '.join(STORAGE_DTYPES)}, got {storage_dtype}")
    folder.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"{type(model).__name__} has no .config; save_model needs a model built from a config dataclass")
    (folder / CONFIG_NAME).write_text(json.dumps(config_to_dict(config), indent=2) + "\n")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "type": type(config).TYPE}
    if stored_as:
        tensors = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        metadata[STORED_AS_KEY] = stored_as
    save_file(tensors, folder / WEIGHTS_NAME, metadata=metadata)
    return folder


def load_model(
    folder: str | Path, model_class: type[nn.Module] | None = None,
    dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> nn.Module:
    """Read a folder written by :func:`save_model`. The config's ``type`` picks the class from
    :func:`model_classes` unless ``model_class`` is given. Returns the model in eval mode. Weights saved with a
    ``storage_dtype`` come back as float32 unless ``dtype`` says otherwise."""
    folder = Path(folder)
    data = json.loads(_require(folder / CONFIG_NAME).read_text())
    if model_class is None:
        classes = model_classes()
        if data.get("type") not in classes:
            raise ValueError(f"{folder / CONFIG_NAME} has type {data.get('type')!r}; known types: {', '.join(classes)}")
        model_class = classes[data["type"]]
    config = config_from_dict(model_class.config_class, data)
    weights = _require(folder / WEIGHTS_NAME)
    state_dict, metadata = read_safetensors(weights)
    if dtype is None and STORED_AS_KEY in metadata:
        dtype = torch.float32
    return build_with_weights(model_class, config, state_dict, str(weights), dtype, device)


# -- diffusers ------------------------------------------------------------------------------------------


def read_diffusers_weights(folder: str | Path, variant: str | None = None) -> dict[str, Tensor]:
    """The state dict of a diffusers model folder: ``diffusion_pytorch_model[.variant].safetensors`` or the
    shards its ``.index.json`` lists. Pickled ``.bin`` checkpoints are refused."""
    folder = Path(folder)
    stem = "diffusion_pytorch_model" + (f".{variant}" if variant else "")
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    if single.exists():
        return read_safetensors(single)[0]
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state_dict: dict[str, Tensor] = {}
        for shard in shards:
            state_dict.update(read_safetensors(_require(folder / shard))[0])
        return state_dict
    if (folder / f"{stem}.bin").exists():
        raise ValueError(f"{folder} holds only a pickled {stem}.bin; convert it to safetensors (pickles are never loaded)")
    raise FileNotFoundError(f"no {single.name} (or sharded index) in {folder}")


def load_diffusers_unet(
    folder: str | Path, variant: str | None = None, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> nn.Module:
    """A diffusers ``UNet2DModel``/``UNet2DConditionModel`` folder (e.g. ``<pipeline>/unet``) as our :class:`UNet`.
    Parameter names are identical, so the key map is the identity; every key is still checked both ways."""
    from unstatic.networks.unet import UNet, UNetConfig

    folder = Path(folder)
    config = UNetConfig.from_diffusers(json.loads(_require(folder / CONFIG_NAME).read_text()))
    source = str(folder / ("diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"))
    return build_with_weights(UNet, config, read_diffusers_weights(folder, variant), source, dtype, device)


def load_diffusers_vae(
    folder: str | Path, variant: str | None = None, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> nn.Module:
    """A diffusers ``AutoencoderKL`` folder (e.g. ``<pipeline>/vae``) as our :class:`AutoencoderKL`; old
    checkpoints' attention names (``query``/``key``/``value``/``proj_attn``) are renamed on the way."""
    from unstatic.networks.vae import AutoencoderKL, VAEConfig, rename_legacy_attention

    folder = Path(folder)
    config = VAEConfig.from_diffusers(json.loads(_require(folder / CONFIG_NAME).read_text()))
    source = str(folder / ("diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"))
    state_dict = rename_legacy_attention(read_diffusers_weights(folder, variant))
    return build_with_weights(AutoencoderKL, config, state_dict, source, dtype, device)


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"missing {path}")
    return path
