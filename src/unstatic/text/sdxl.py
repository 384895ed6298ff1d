"""SDXL's text conditioning (Podell et al. 2023, "SDXL: Improving Latent Diffusion Models for High-Resolution
Image Synthesis", Sec. 2.1): two CLIP text encoders, OpenAI's CLIP ViT-L and OpenCLIP ViT-bigG. The context
the U-Net cross-attends to is both encoders' penultimate hidden states side by side (768 + 1280 = 2048 wide,
without the final layer norm); the pooled vector is the second encoder's projected pooled output
(``CLIPTextModelWithProjection.text_embeds``), which the U-Net reads through its added conditioning.

``clip_skip`` counts as for SD 1.x/2.x (A1111): 1 is SDXL's own choice (``hidden_states[-2]``), 2 one layer
earlier, so our ``clip_skip=k`` is diffusers' ``clip_skip=k-1`` here as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from unstatic.text.clip import CLIPTextEncoder
from unstatic.text.embedding import TextEmbedding

NAME = "sdxl_clip"
FOLDERS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
SETTINGS_NAME = "text_encoders.json"


class SDXLTextEncoder:
    """The pair as one `TextEncoder`: ``encode`` gives ``[B, 77, w1 + w2]`` contexts and ``[B, projection]``
    pooled vectors.

    ``zero_empty_negative`` is diffusers' ``force_zeros_for_empty_prompt`` (true for SDXL base): when no negative
    prompt is given, the unconditional branch of guidance is all zeros (context and pooled) rather than the
    encoded empty prompt. :meth:`null` gives those rows; the conditioner decides when to use them."""

    name = NAME

    def __init__(self, first: CLIPTextEncoder, second: CLIPTextEncoder, zero_empty_negative: bool = True) -> None:
        if first.final_layer_norm or second.final_layer_norm or first.clip_skip != second.clip_skip or first.clip_skip < 2:
            raise ValueError("SDXL reads both encoders' hidden states below the last layer without the final layer norm: "
                             "build them with SDXLTextEncoder.from_models")
        if not second.has_projection:
            raise ValueError("SDXL's second text encoder must be a CLIPTextModelWithProjection (its pooled output is projected)")
        if first.max_length != second.max_length:
            raise ValueError(f"the two tokenizers pad to different lengths ({first.max_length} and {second.max_length})")
        self.first, self.second, self.zero_empty_negative = first, second, zero_empty_negative
        self.width = first.width + second.width
        self.pooled_width = second.pooled_width
        self.max_length = first.max_length
        self.device = first.device

    @classmethod
    def from_models(cls, model: torch.nn.Module, tokenizer: object, model_2: torch.nn.Module, tokenizer_2: object,
                    clip_skip: int = 1, max_length: int | None = None, device: torch.device | str = "cpu",
                    zero_empty_negative: bool = True) -> SDXLTextEncoder:
        """The pair from loaded transformers models and tokenizers (``model_2`` with its text projection)."""
        if clip_skip < 1:
            raise ValueError(f"clip_skip must be at least 1 (1 = SDXL's penultimate layer), got {clip_skip}")
        encoders = [CLIPTextEncoder(m, t, clip_skip=clip_skip + 1, max_length=max_length, device=device, final_layer_norm=False)
                    for m, t in ((model, tokenizer), (model_2, tokenizer_2))]
        return cls(*encoders, zero_empty_negative=zero_empty_negative)

    @classmethod
    def from_folder(cls, folder: str | Path, clip_skip: int = 1, max_length: int | None = None,
                    device: torch.device | str = "cpu", torch_dtype: torch.dtype = torch.float32,
                    zero_empty_negative: bool | None = None) -> SDXLTextEncoder:
        """From a folder holding ``text_encoder/``, ``tokenizer/``, ``text_encoder_2/``, ``tokenizer_2/`` (a diffusers
        SDXL folder or ours); ``zero_empty_negative`` defaults to our ``text_encoders.json``, else true."""
        folder = Path(folder)
        pair = [CLIPTextEncoder.from_folders(folder / FOLDERS[i], folder / FOLDERS[i + 1], max_length=max_length,
                                             device=device, torch_dtype=torch_dtype) for i in (0, 2)]
        if zero_empty_negative is None:
            settings = folder / SETTINGS_NAME
            zero_empty_negative = json.loads(settings.read_text()).get("force_zeros_for_empty_prompt", True) if settings.is_file() else True
        return cls.from_models(pair[0].model, pair[0].tokenizer, pair[1].model, pair[1].tokenizer, clip_skip=clip_skip,
                               max_length=max_length, device=device, zero_empty_negative=zero_empty_negative)

    @property
    def clip_skip(self) -> int:
        return self.first.clip_skip - 1

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Both encoders on the same prompts; contexts concatenated along the width, the second's pooled vector."""
        first, second = self.first.encode(prompts), self.second.encode(prompts)
        return TextEmbedding(torch.cat([first.context, second.context], dim=-1), second.pooled)

    def null(self, count: int) -> TextEmbedding:
        """``count`` all-zero rows: the negative condition when ``zero_empty_negative`` and no negative prompt."""
        return TextEmbedding(torch.zeros(count, self.max_length, self.width, device=self.device),
                             torch.zeros(count, self.pooled_width, device=self.device))

    def save(self, folder: str | Path, settings: bool = True) -> None:
        """Write the four transformers folders and (``settings``) ``text_encoders.json``, the empty-negative rule,
        into ``folder``."""
        folder = Path(folder)
        for i, encoder in ((0, self.first), (2, self.second)):
            encoder.model.save_pretrained(folder / FOLDERS[i])
            encoder.tokenizer.save_pretrained(folder / FOLDERS[i + 1])
        if settings:
            data = {"type": NAME, "version": 1, "force_zeros_for_empty_prompt": self.zero_empty_negative}
            (folder / SETTINGS_NAME).write_text(json.dumps(data, indent=2) + "\n")
