"""From what users and datasets give (class labels, prompts) to what a network is conditioned on, and the
null condition classifier-free guidance and condition dropout use (Ho & Salimans 2022): the reserved class
``num_classes`` for class models, the empty prompt for text models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unstatic.models.spec import DiffusionSpec


class Conditioner:
    """Builds network conditions (``{"class_labels": ...}`` or ``{"context": ...}``) for one model.

    The text encoder named by the spec is loaded on first use and caches prompt encodings; a model with its
    own CLIP (``text_encoder="clip"``, from its folder) hands it over through :meth:`for_model`."""

    def __init__(self, spec: DiffusionSpec, device: torch.device | str = "cpu", text_encoder=None) -> None:
        self.spec, self.device = spec, torch.device(device)
        self._text = text_encoder

    @classmethod
    def for_model(cls, model, device: torch.device | str | None = None) -> Conditioner:
        """The conditioner of a :class:`~unstatic.models.folder.DiffusionModel`, using the text encoder it carries
        (CLIP from its folder) behind a prompt cache, or else the one its spec names."""
        device = device if device is not None else next(model.network.parameters()).device
        encoder = None
        if model.text_encoder is not None:
            from unstatic.text import CachedEncoder

            encoder = CachedEncoder(model.text_encoder, max_entries=64)  # CLIP-L rows at 77 tokens: 231 KiB each
        return cls(model.spec, device, encoder)

    @property
    def text_encoder(self):
        if self._text is None:
            if self.spec.text_encoder == "clip":
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

    def prompts(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        return {"context": self.text_encoder.encode(list(prompts)).context.to(self.device)}

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
