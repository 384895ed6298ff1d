"""CLIP text encoders (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision") loaded from the local ``text_encoder/`` and ``tokenizer/`` folders of a diffusers-format
Stable Diffusion model. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from unstatic.text.embedding import empty_embedding, quiet_loading, tokenize_fixed, TextEmbedding, TruncationWarner, check_prompts, import_transformers

WITH_PROJECTION = "CLIPTextModelWithProjection"


class CLIPTextEncoder:
    """A CLIP text transformer as a `TextEncoder`.

    ``clip_skip`` counts layers from the end the way A1111's "Clip skip" setting does: ``clip_skip=1`` is the
    last layer's output after ``final_layer_norm`` (Stable Diffusion 1.x), ``clip_skip=2`` the penultimate
    layer's hidden state passed through the same ``final_layer_norm``, and so on: ``hidden_states[-clip_skip]``
    then ``final_layer_norm``. diffusers counts layers *skipped* instead, so our ``clip_skip=k`` equals
    diffusers' ``clip_skip=k-1`` (and ``clip_skip=None`` there is 1 here).

    ``final_layer_norm=False`` leaves the chosen hidden state as it is (SDXL reads ``hidden_states[-2]`` of both
    its encoders without the norm; Podell et al. 2023, Sec. 2.1).

    ``pooled`` is the final-layer state at the first end-of-text token (``pooler_output``), or the projected
    ``text_embeds`` when the folder holds a ``CLIPTextModelWithProjection`` (SDXL's second encoder); it does
    not depend on ``clip_skip``, as in diffusers.

    Tokens are padded to ``max_length`` (77) with the tokenizer's own pad token (Stable Diffusion 1.x pads
    with ``<|endoftext|>``, 2.x with ``!``), and no attention mask is passed, as SD 1.x/2.x do: the text
    transformer is causal, so real tokens never see the padding. Longer prompts are truncated with a
    warning; A1111's chunking of long prompts into 75-token pieces is out of scope.
    """

    name = "clip"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: object,
        clip_skip: int = 1,
        max_length: int | None = None,
        device: torch.device | str = "cpu",
        final_layer_norm: bool = True,
    ) -> None:
        config = model.config
        if not 1 <= clip_skip <= config.num_hidden_layers:
            raise ValueError(f"clip_skip must be in [1, {config.num_hidden_layers}] (1 = last layer), got {clip_skip}")
        max_length = tokenizer.model_max_length if max_length is None else max_length
        if not 2 <= max_length <= config.max_position_embeddings:
            raise ValueError(
                f"max_length must be in [2, {config.max_position_embeddings}] (start + end tokens + text), got {max_length}"
            )
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.clip_skip = clip_skip
        self.final_layer_norm = final_layer_norm
        self.max_length = max_length
        self.has_projection = hasattr(model, "text_projection")
        self.width = config.hidden_size
        self.pooled_width = config.projection_dim if self.has_projection else config.hidden_size
        self.device = torch.device(device)
        self.truncation = TruncationWarner(self.name)

    @classmethod
    def from_folders(
        cls,
        text_encoder: str | Path,
        tokenizer: str | Path,
        clip_skip: int = 1,
        max_length: int | None = None,
        device: torch.device | str = "cpu",
        torch_dtype: torch.dtype = torch.float32,
    ) -> CLIPTextEncoder:
        """Load ``CLIPTextModel`` (or ``CLIPTextModelWithProjection`` when its config names it) and
        ``CLIPTokenizer`` from local folders; ``max_length`` defaults to the tokenizer's (77)."""
        transformers = import_transformers()
        text_encoder, tokenizer = Path(text_encoder), Path(tokenizer)
        if not (text_encoder / "config.json").is_file():
            raise FileNotFoundError(f"no CLIP text model at text_encoder={str(text_encoder)!r} (expected config.json)")
        if not tokenizer.is_dir():
            raise FileNotFoundError(f"no CLIP tokenizer folder at tokenizer={str(tokenizer)!r}")
        config = transformers.CLIPTextConfig.from_pretrained(text_encoder, local_files_only=True)
        model_class = (
            transformers.CLIPTextModelWithProjection
            if WITH_PROJECTION in (config.architectures or ())
            else transformers.CLIPTextModel
        )
        # .to() rather than a dtype argument: its name changed across transformers versions (torch_dtype -> dtype)
        with quiet_loading(transformers):
            model = model_class.from_pretrained(text_encoder, local_files_only=True).to(dtype=torch_dtype)
        clip_tokenizer = transformers.CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True)
        return cls(model, clip_tokenizer, clip_skip=clip_skip, max_length=max_length, device=device)

    def save(self, folder: str | Path) -> None:
        """Write ``text_encoder/`` and ``tokenizer/`` (transformers' own files) into a model folder."""
        self.model.save_pretrained(Path(folder) / "text_encoder")
        self.tokenizer.save_pretrained(Path(folder) / "tokenizer")

    @property
    def text_model(self) -> torch.nn.Module:
        """The bare ``CLIPTextModel`` (inside the projection wrapper when there is one)."""
        # transformers 5 nests it only in the projection wrapper; 4.x always has a ``.text_model`` inside
        return getattr(self.model, "text_model", self.model)

    @torch.no_grad()  # not inference_mode: its tensors could not be saved for a U-Net's backward pass
    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Encode prompts to a fixed-length `TextEmbedding` (float32, on this encoder's device)."""
        prompts = check_prompts(prompts)
        if not prompts:
            return empty_embedding(self.max_length, self.width, self.pooled_width, self.device)
        input_ids = tokenize_fixed(self.tokenizer, prompts, self.max_length, self.truncation, self.device)["input_ids"]
        last = self.clip_skip == 1 and self.final_layer_norm
        output = self.text_model(input_ids, output_hidden_states=not last)
        if last:
            context = output.last_hidden_state  # already through final_layer_norm
        else:
            # hidden_states = (embeddings, layer 1, ..., layer N), before final_layer_norm
            context = output.hidden_states[-self.clip_skip]
            if self.final_layer_norm:
                context = self.text_model.final_layer_norm(context)
        pooled = output.pooler_output
        if self.has_projection:
            pooled = self.model.text_projection(pooled)
        return TextEmbedding(context.float(), pooled.float())
