"""What a text encoder returns (`TextEmbedding`), what every encoder provides (`TextEncoder`), and the two
rules every encoder shares: fixed-length tokenization that warns when it truncates, and a helpful error
when the optional ``text`` dependencies are missing.

A diffusion U-Net conditions on the per-token hidden states through cross-attention (Rombach et al. 2022,
"High-Resolution Image Synthesis with Latent Diffusion Models", Eq. 3: ``Attention(Q, K, V)`` with
``K, V`` projected from the text context ``tau(y)``), and may add a pooled vector as a global embedding.
"""

from __future__ import annotations

from contextlib import contextmanager

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

INSTALL_HINT = "reinstall unstatic (pip install -c constraints.txt -e .), which depends on it"


@dataclass(frozen=True, eq=False)
class TextEmbedding:
    """A batch of encoded prompts.

    ``context`` is ``[B, L, D]`` per-token states, always padded to the encoder's ``max_length`` so batches
    (and the cond/uncond halves of classifier-free guidance) concatenate; ``pooled`` is ``[B, D']``.
    """

    context: Tensor
    pooled: Tensor

    def __post_init__(self) -> None:
        if self.context.ndim != 3:
            raise ValueError(f"context must be [B, L, D], got shape {tuple(self.context.shape)}")
        if self.pooled.ndim != 2:
            raise ValueError(f"pooled must be [B, D'], got shape {tuple(self.pooled.shape)}")
        if self.context.shape[0] != self.pooled.shape[0]:
            raise ValueError(
                f"context and pooled disagree on the batch size: {self.context.shape[0]} vs {self.pooled.shape[0]}"
            )

    def __len__(self) -> int:
        return self.context.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextEmbedding:
        """Both tensors on ``device`` (and in ``dtype`` when given)."""
        return TextEmbedding(self.context.to(device=device, dtype=dtype), self.pooled.to(device=device, dtype=dtype))

    def __getitem__(self, rows: int | slice | Sequence[int] | Tensor) -> TextEmbedding:
        """Rows of the batch, by slice, index list, index tensor or boolean mask. An integer keeps the batch
        dimension (``emb[3]`` is a batch of one), so the result is always a valid `TextEmbedding`."""
        if isinstance(rows, int):
            rows = slice(rows, rows + 1) if rows != -1 else slice(-1, None)
        if isinstance(rows, Sequence):
            rows = torch.as_tensor(rows, dtype=torch.long)
        if isinstance(rows, Tensor):
            rows = rows.to(self.context.device)
        return TextEmbedding(self.context[rows], self.pooled[rows])

    @staticmethod
    def cat(items: Sequence[TextEmbedding]) -> TextEmbedding:
        """Concatenate along the batch (e.g. ``cat([uncond, cond])`` for one classifier-free-guidance forward)."""
        if not items:
            raise ValueError("TextEmbedding.cat needs at least one item")
        shapes = {tuple(item.context.shape[1:]) for item in items}
        if len(shapes) > 1:
            raise ValueError(f"cannot concatenate contexts of different [L, D]: {sorted(shapes)}")
        return TextEmbedding(torch.cat([item.context for item in items]), torch.cat([item.pooled for item in items]))


@runtime_checkable
class TextEncoder(Protocol):
    """Maps prompts to a `TextEmbedding` of fixed length ``max_length``.

    ``encode`` runs without gradients in eval mode, is deterministic and batch-invariant: row ``i`` does not
    depend on the other prompts in the batch (to 1e-6), which is what makes per-prompt caching exact.
    """

    name: str  # registry name, saved in model specs so a model knows its encoder
    width: int  # D of context
    pooled_width: int  # D' of pooled
    max_length: int  # L of context

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Encode a batch of prompts."""
        ...


def import_transformers() -> ModuleType:
    """The ``transformers`` module, or an ImportError that says how to install it."""
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"text encoders need the 'transformers' package: {INSTALL_HINT}") from error
    return transformers


@contextmanager
def quiet_loading(transformers: ModuleType):
    """Hide transformers' per-load "Loading weights" bar (a local file loads in milliseconds), restoring the
    user's global setting afterwards."""
    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def tokenize_fixed(tokenizer, prompts: list[str], max_length: int, truncation: "TruncationWarner", device) -> dict:
    """Tokens padded to ``max_length`` (truncated, with a warning the first time a prompt is cut), on ``device``."""
    untruncated = tokenizer(prompts)["input_ids"]
    truncation.check(prompts, [len(ids) for ids in untruncated], max_length)
    return tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt").to(device)


def empty_embedding(max_length: int, width: int, pooled_width: int, device) -> TextEmbedding:
    """The embedding of no prompts at all (zero rows), shaped like any other."""
    return TextEmbedding(torch.zeros(0, max_length, width, device=device), torch.zeros(0, pooled_width, device=device))


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """The prompts as a list of strings; a bare string is refused because it would encode character by character."""
    if isinstance(prompts, str):
        raise ValueError(f"encode takes a sequence of prompts, got the single string {prompts!r}; wrap it in a list")
    prompts = list(prompts)
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ValueError(f"prompts[{index}] must be a str, got {type(prompt).__name__}")
    return prompts


class TruncationWarner:
    """Warns the first time an encoder truncates a prompt, naming it and how many tokens were dropped.

    Only once per encoder: a training run encodes thousands of captions, and one warning per caption would
    bury everything else. ``truncated`` keeps counting so callers can still see how often it happened.
    """

    def __init__(self, encoder_name: str) -> None:
        self.encoder_name = encoder_name
        self.truncated = 0
        self._warned = False

    def check(self, prompts: Sequence[str], token_counts: Sequence[int], max_length: int) -> None:
        """``token_counts[i]`` is prompt i's untruncated length including special tokens."""
        over = [(prompt, count - max_length) for prompt, count in zip(prompts, token_counts) if count > max_length]
        self.truncated += len(over)
        if over and not self._warned:
            self._warned = True
            prompt, dropped = over[0]
            warnings.warn(
                f"{self.encoder_name}: prompt {prompt!r} is {dropped} token(s) longer than max_length={max_length}; "
                f"its last {dropped} token(s) are dropped (further truncations by this encoder are not reported)",
                UserWarning,
                stacklevel=3,
            )
