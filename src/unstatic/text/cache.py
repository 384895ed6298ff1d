"""A least-recently-used cache of encoded prompts in front of any `TextEncoder`.

Training on a closed caption vocabulary encodes the same captions over and over; encoders are
batch-invariant, so a row computed once can be reused in any later batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from unstatic.text.embedding import TextEmbedding, TextEncoder, check_prompts


class CachedEncoder:
    """Wraps a `TextEncoder`, keeping up to ``max_entries`` prompts' ``(context row, pooled row)``.

    ``encode`` encodes only the prompts not in the cache, all in one batch, and returns rows in the order
    asked. ``hits + misses`` counts every row ever requested: a row is a miss when its prompt had to be
    encoded in that call (once per distinct prompt), otherwise a hit.

    Memory: an entry holds ``max_length * width`` floats (MiniLM at L=32: 48 KiB; CLIP-L at 77: 231 KiB),
    kept on the wrapped encoder's device; size ``max_entries`` accordingly.
    """

    def __init__(self, encoder: TextEncoder, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.encoder = encoder
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._rows: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def width(self) -> int:
        return self.encoder.width

    @property
    def pooled_width(self) -> int:
        return self.encoder.pooled_width

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._rows

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        self._rows.clear()
        self.hits = self.misses = 0

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Same result as ``encoder.encode(prompts)``, reusing cached rows."""
        prompts = check_prompts(prompts)
        if not prompts:
            return self.encoder.encode([])
        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._rows]
        # Rows of this call, looked up here rather than in the cache, so a batch with more distinct prompts
        # than max_entries still comes back whole even though some of its rows were already evicted.
        rows: dict[str, tuple[Tensor, Tensor]] = {}
        for prompt in dict.fromkeys(prompts):
            if prompt in self._rows:
                self._rows.move_to_end(prompt)
                rows[prompt] = self._rows[prompt]
        if missing:
            fresh = self.encoder.encode(missing)
            for index, prompt in enumerate(missing):
                # clone: a view would keep the whole fresh batch alive for as long as one row is cached
                rows[prompt] = (fresh.context[index].clone(), fresh.pooled[index].clone())
                self._store(prompt, rows[prompt])
        self.misses += len(missing)
        self.hits += len(prompts) - len(missing)
        context = torch.stack([rows[prompt][0] for prompt in prompts])
        pooled = torch.stack([rows[prompt][1] for prompt in prompts])
        return TextEmbedding(context, pooled)

    def _store(self, prompt: str, row: tuple[Tensor, Tensor]) -> None:
        self._rows[prompt] = row
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)  # least recently used first
