"""Which samples each step sees: a deterministic stream that any process can start at any position.

Sample number ``k`` of the run (counting from 0 over the whole run) is item ``perm_e[k mod N]`` of epoch
``e = k // N``, where ``perm_e`` is a permutation seeded by ``(seed, e)``. Micro-batch ``m`` is samples
``[m * B, (m + 1) * B)`` of the global batch ``B``; rank ``r`` of ``W`` takes the ``r``-th slice of ``B / W``.
So the data a step sees is a function of the step alone: resuming needs only the step, and W processes with
batch B/W see exactly the samples one process with batch B sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (NumPy's SeedSequence hashing), so nearby inputs give unrelated seeds."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seed_weight_init(seed: int) -> None:
    """Seed the global RNG that initialises a run's network weights (right before building it)."""
    torch.manual_seed(derive_seed(seed, 0x1A17))


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, size: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(derive_seed(seed, epoch, 0x0DA7A))
    return tuple(torch.randperm(size, generator=generator).tolist())


class BatchStream:
    """An iterable of this rank's micro-batches as lists of ``(epoch, index)``, starting at micro-batch
    ``start`` (pass it to a ``DataLoader`` as ``batch_sampler``)."""

    def __init__(self, size: int, global_batch: int, seed: int, start: int = 0, rank: int = 0, world: int = 1,
                 count: int | None = None) -> None:
        if global_batch % world:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world} processes")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.start, self.rank, self.world, self.count = start, rank, world, count

    def micro_batch(self, number: int) -> list[tuple[int, int]]:
        local = self.global_batch // self.world
        first = number * self.global_batch + self.rank * local
        items = []
        for k in range(first, first + local):
            epoch, position = divmod(k, self.size)
            items.append((epoch, epoch_permutation(self.seed, epoch, self.size)[position]))
        return items

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        number = self.start
        while self.count is None or number < self.start + self.count:
            yield self.micro_batch(number)
            number += 1

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError("an endless BatchStream has no length")
        return self.count


class EpochIndexed(Dataset):
    """Lets a dataset be indexed by ``(epoch, index)``: datasets with random augmentation expose
    ``set_epoch`` and draw it from ``(seed, epoch, index)``, so items do not depend on worker or call order."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]
