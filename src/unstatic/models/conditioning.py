"""From what users and datasets give (class labels, prompts) to what a network is conditioned on, and the
null condition classifier-free guidance and condition dropout use (Ho & Salimans 2022): the reserved class
``num_classes`` for class models, the empty prompt for text models.

SDXL (Podell et al. 2023, Sec. 2.2, "micro-conditioning") also conditions on the pooled text embedding and six
numbers: the original image size, the crop's top-left corner and the target size, ``(h, w)`` pairs in pixels.
For generation they default to ``(H, W)``, ``(0, 0)``, ``(H, W)`` of the image being made (an uncropped image
of exactly that size, as diffusers' ``StableDiffusionXLPipeline`` does), for both guidance branches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unstatic.models.spec import DiffusionSpec
from unstatic.text.embedding import TextEmbedding
from unstatic.text.registry import FOLDER_TEXT_ENCODERS
from unstatic.text.sdxl import NAME as SDXL_TEXT_ENCODER


def size_conditioning(count: int, size: tuple[int, int], original_size: tuple[int, int] | None = None,
                      crop_top_left: tuple[int, int] = (0, 0)) -> Tensor:
    """SDXL's ``time_ids`` ``[count, 6]``: original ``(h, w)``, crop ``(top, left)``, target ``(h, w)`` in pixels
    (Podell et al. 2023, Sec. 2.2; the order of diffusers' ``_get_add_time_ids``)."""
    numbers = [*(original_size or size), *crop_top_left, *size]
    return torch.tensor(numbers, dtype=torch.float32).expand(count, -1)


class Conditioner:
    """Builds network conditions (``{"class_labels": ...}`` or ``{"context": ...}``; SDXL: ``{"context": ...,
    "added": {"text_embeds": ..., "time_ids": ...}}``) for one model.

    The text encoder named by the spec is loaded on first use and caches prompt encodings; a model with its
    own CLIP (``text_encoder="clip"`` or ``"sdxl_clip"``, from its folder) hands it over through :meth:`for_model`.
    ``image_size`` is the default ``(h, w)`` in pixels for SDXL's size conditioning; ``zero_empty_negative``
    makes an empty negative prompt all zeros (diffusers' ``force_zeros_for_empty_prompt``, SDXL's default)."""

    def __init__(self, spec: DiffusionSpec, device: torch.device | str = "cpu", text_encoder=None,
                 image_size: tuple[int, int] | None = None, zero_empty_negative: bool = False) -> None:
        self.spec, self.device = spec, torch.device(device)
        self._text = text_encoder
        self.image_size = image_size or (spec.image_size, spec.image_size)
        self.zero_empty_negative = zero_empty_negative

    @classmethod
    def for_model(cls, model, device: torch.device | str | None = None) -> Conditioner:
        """The conditioner of a :class:`~unstatic.models.folder.DiffusionModel`, using the text encoder it carries
        (CLIP from its folder) behind a prompt cache, or else the one its spec names."""
        device = device if device is not None else next(model.network.parameters()).device
        encoder = None
        if model.text_encoder is not None:
            from unstatic.text import CachedEncoder

            encoder = CachedEncoder(model.text_encoder, max_entries=64)  # CLIP-L rows at 77 tokens: 231 KiB each
        side = model.spec.image_size * model.pixels_per_cell
        return cls(model.spec, device, encoder, image_size=(side, side),
                   zero_empty_negative=bool(getattr(model.text_encoder, "zero_empty_negative", False)))

    @property
    def text_encoder(self):
        if self._text is None:
            if self.spec.text_encoder in FOLDER_TEXT_ENCODERS:
                raise ValueError("this model's CLIP text encoder comes from its folder: build the conditioner with "
                                 "Conditioner.for_model(model) (load the model with load_diffusion_model)")
            from unstatic.text import CachedEncoder, load_text_encoder

            encoder = load_text_encoder(self.spec.text_encoder, device=self.device, max_length=self.spec.text_max_length)
            self._text = CachedEncoder(encoder, max_entries=1024)  # ~50 MB of MiniLM rows at 32 tokens
        return self._text

    def labels(self, labels: Sequence[int] | Tensor) -> dict[str, Tensor]:
        labels = torch.as_tensor(labels, dtype=torch.long)
        bad = labels[(labels < 0) | (labels > self.spec.num_classes)].tolist()
        if bad:
            raise ValueError(f"class labels {bad} out of range: this model has classes 0..{self.spec.num_classes - 1}")
        return {"class_labels": labels.to(self.device)}

    def prompts(self, prompts: Sequence[str], size: tuple[int, int] | None = None) -> dict:
        """The condition for ``prompts``; ``size`` ``(h, w)`` in pixels is the image's, for SDXL's size
        conditioning (default: the model's training size)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        return self._text_condition(self.text_encoder.encode(list(prompts)), size)

    def negative(self, prompts: Sequence[str], size: tuple[int, int] | None = None) -> dict:
        """The unconditional branch of guidance for these negative prompts: as :meth:`prompts`, except that with
        ``zero_empty_negative`` an empty negative prompt is all zeros (context and pooled), as diffusers' SDXL
        pipeline does when no negative prompt is given."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        prompts = list(prompts)
        empty = torch.tensor([p == "" for p in prompts], dtype=torch.bool)
        if not self.zero_empty_negative or not bool(empty.any()):
            return self.prompts(prompts, size)
        encoded = self.text_encoder.encode([p for p in prompts if p]) if not bool(empty.all()) else None
        context = torch.zeros(len(prompts), self.text_encoder.max_length, self.text_encoder.width)
        pooled = torch.zeros(len(prompts), self.text_encoder.pooled_width)
        if encoded is not None:
            context[~empty], pooled[~empty] = encoded.context.cpu(), encoded.pooled.cpu()
        return self._text_condition(TextEmbedding(context, pooled), size)

    def _text_condition(self, embedding: TextEmbedding, size: tuple[int, int] | None) -> dict:
        condition = {"context": embedding.context.to(self.device)}
        if self.spec.text_encoder == SDXL_TEXT_ENCODER:
            ids = size_conditioning(len(embedding), size or self.image_size)
            condition["added"] = {"text_embeds": embedding.pooled.to(self.device), "time_ids": ids.to(self.device)}
        return condition

    def from_batch(self, batch: dict) -> dict[str, Tensor] | None:
        """The condition for a training batch (its ``label`` or ``caption`` entries)."""
        if self.spec.conditioning == "class":
            return self.labels(batch["label"])
        if self.spec.conditioning == "text":
            return self.prompts(batch["caption"])
        return None

    def null(self, count: int = 1) -> dict[str, Tensor] | None:
        """``count`` rows of the unconditional condition (None for unconditional models)."""
        if self.spec.conditioning == "class":
            return self.labels([self.spec.null_class] * count)
        if self.spec.conditioning == "text":
            return self.prompts([""] * count)
        return None
