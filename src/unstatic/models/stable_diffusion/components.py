"""Building the pieces of a Stable Diffusion model from tensors in some layout, checked name by name and shape
by shape, with errors that name the file and the tensor; shared by the single-file and standalone-VAE readers."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unstatic.models.stable_diffusion.clip_keys import PROJECTION
from unstatic.models.stable_diffusion.key_maps import check_shapes, rename
from unstatic.networks.weights import build_with_weights


def build_from_layout(
    model_class: type[nn.Module], config: Any, tensors: dict[str, Tensor], prefix: str,
    key_map_fn: Callable, to_original: Callable, source: str, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None, from_original: Callable | None = None, ignore: tuple[str, ...] = (),
) -> nn.Module:
    """``model_class(config)`` holding the ``prefix``-ed tensors of ``tensors`` (their names mapped by
    ``key_map_fn(config, model)``; ``to_original`` gives the shapes they must have in the file). Tensors under
    ``prefix`` that start with one of ``ignore`` are skipped."""
    with torch.device("meta"):
        skeleton = model_class(config)
    key_map = key_map_fn(config, skeleton)
    expected = to_original(skeleton.state_dict(), key_map)
    present = {k: v for k, v in tensors.items() if k.startswith(prefix) and not k[len(prefix):].startswith(ignore)}
    check_shapes(present, {k: v.shape for k, v in expected.items()}, source)
    state = rename(present, key_map, source, prefix)
    if from_original is not None:
        state = from_original(state)
    return build_with_weights(model_class, config, state, source, dtype, device)


def build_clip(config: dict[str, Any], text_state: dict[str, Tensor], source: str, dtype: torch.dtype | None = None) -> nn.Module:
    """A transformers ``CLIPTextModel`` of ``config`` holding ``text_state`` (``CLIPTextTransformer`` names), or a
    ``CLIPTextModelWithProjection`` when ``config["architectures"]`` names it (``text_state`` then also holds
    ``text_projection.weight``)."""
    from unstatic.text.clip import WITH_PROJECTION
    from unstatic.text.embedding import import_transformers

    transformers = import_transformers()
    with_projection = WITH_PROJECTION in (config.get("architectures") or ())
    model_class = transformers.CLIPTextModelWithProjection if with_projection else transformers.CLIPTextModel
    model = model_class(transformers.CLIPTextConfig(**config)).eval()
    inner = getattr(model, "text_model", model)  # transformers 4 nests the transformer, 5 does not
    expected = {k: v.shape for k, v in inner.state_dict().items() if k != "embeddings.position_ids"}
    if with_projection:
        expected[PROJECTION] = model.text_projection.weight.shape
    missing = sorted(set(expected) - set(text_state))
    unexpected = sorted(set(text_state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source}: the text encoder does not match a CLIP text model: missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}")
    check_shapes(text_state, expected, f"{source} (text encoder)")
    inner.load_state_dict({k: v for k, v in text_state.items() if k != PROJECTION}, strict=False)
    if with_projection:
        with torch.no_grad():
            model.text_projection.weight.copy_(text_state[PROJECTION])
    return model.to(dtype=dtype or torch.float32)


def text_model_state(model: nn.Module) -> dict[str, Tensor]:
    """A transformers CLIP text model's tensors by ``CLIPTextTransformer`` names (no position-id buffer), plus
    ``text_projection.weight`` for a ``CLIPTextModelWithProjection``."""
    inner = getattr(model, "text_model", model)
    state = {k: v.detach().cpu().contiguous() for k, v in inner.state_dict().items() if k != "embeddings.position_ids"}
    if hasattr(model, "text_projection"):
        state[PROJECTION] = model.text_projection.weight.detach().cpu().contiguous()
    return state


def clip_config(model: nn.Module) -> dict[str, Any]:
    """A CLIP text model's config as a plain dict that :func:`build_clip` rebuilds it from (its class included)."""
    data = model.config.to_dict()
    data = {k: v for k, v in data.items() if not k.startswith("_") and k != "transformers_version"}
    return {**data, "architectures": [type(model).__name__]}


def truncated_clip(model: nn.Module, layers: int) -> nn.Module:
    """The same CLIP text model keeping only its first ``layers`` layers (``last_hidden_state`` of the result is
    layer ``layers`` through ``final_layer_norm``: what ``clip_skip = N - layers + 1`` reads from the whole)."""
    if layers == model.config.num_hidden_layers:
        return model
    config = {**clip_config(model), "num_hidden_layers": layers}
    state = {k: v for k, v in text_model_state(model).items()
             if not (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= layers)}
    return build_clip(config, state, "text encoder")


def tokenizer_files(tokenizer: Any) -> dict[str, str]:
    """A tokenizer's saved files as text (to store it inside a single file's metadata)."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return {path.name: path.read_text(encoding="utf-8") for path in Path(folder).iterdir() if path.is_file()}


def tokenizer_from_files(files: dict[str, str]) -> Any:
    from unstatic.text.embedding import import_transformers

    transformers = import_transformers()
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            (Path(folder) / Path(name).name).write_text(text, encoding="utf-8")
        return transformers.CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def load_tokenizer(folder: str | Path, **overrides: Any) -> Any:
    """A ``CLIPTokenizer`` from a local folder (``overrides``, e.g. ``pad_token``, replace its settings)."""
    from unstatic.text.embedding import import_transformers

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no tokenizer folder at {folder}")
    return import_transformers().CLIPTokenizer.from_pretrained(folder, local_files_only=True, **overrides)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def check_sd_shaped(model: Any) -> None:
    """Raise unless ``model`` (a DiffusionModel) can be written in a Stable Diffusion layout."""
    spec = model.spec
    if not spec.latent or spec.text_encoder not in ("clip", "sdxl_clip") or spec.schedule.kind != "discrete":
        raise ValueError("only latent models with a CLIP text encoder and a discrete (DDPM) schedule have the "
                         "Stable Diffusion layout")


def cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}
