"""CachedEncoder (against a fake deterministic encoder that records its calls) and TextEmbedding's row algebra."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import pytest
import torch

from unstatic.text import CachedEncoder, TextEmbedding, TextEncoder


class RecordingEncoder:
    """Each prompt maps to its own random rows (seeded by its CRC32), so rows are batch-invariant by
    construction and exactly reproducible; every batch it is asked to encode is recorded."""

    name = "recording"
    width, pooled_width, max_length = 6, 4, 5

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        self.calls.append(list(prompts))
        contexts, pooled = [], []
        for prompt in prompts:
            generator = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
            contexts.append(torch.randn(self.max_length, self.width, generator=generator))
            pooled.append(torch.randn(self.pooled_width, generator=generator))
        if not prompts:
            return TextEmbedding(torch.zeros(0, self.max_length, self.width), torch.zeros(0, self.pooled_width))
        return TextEmbedding(torch.stack(contexts), torch.stack(pooled))


def assert_same(actual: TextEmbedding, expected: TextEmbedding) -> None:
    assert torch.equal(actual.context, expected.context) and torch.equal(actual.pooled, expected.pooled)


def test_identical_to_the_wrapped_encoder_and_exposes_its_shape() -> None:
    cached = CachedEncoder(RecordingEncoder())
    reference = RecordingEncoder()
    assert isinstance(cached, TextEncoder)
    assert (cached.name, cached.width, cached.pooled_width, cached.max_length) == ("recording", 6, 4, 5)
    for prompts in (["a", "b"], ["b", "c", "a"], ["c", "c", ""], ["a"]):
        assert_same(cached.encode(prompts), reference.encode(prompts))


def test_hits_and_misses_count_rows_and_only_missing_prompts_are_encoded() -> None:
    inner = RecordingEncoder()
    cached = CachedEncoder(inner)
    cached.encode(["a", "b", "a"])
    assert inner.calls == [["a", "b"]]  # each distinct missing prompt once, in one batch
    assert (cached.misses, cached.hits) == (2, 1)
    cached.encode(["b", "a"])
    assert inner.calls == [["a", "b"]]  # all hits: the encoder is not called
    assert (cached.misses, cached.hits) == (2, 3)
    cached.clear()
    assert (len(cached), cached.misses, cached.hits) == (0, 0, 0)


def test_mixed_cached_and_uncached_batch_keeps_order() -> None:
    inner = RecordingEncoder()
    cached = CachedEncoder(inner)
    cached.encode(["a", "c"])
    prompts = ["b", "a", "d", "c", "a", "b"]
    result = cached.encode(prompts)
    assert inner.calls[-1] == ["b", "d"]
    assert_same(result, RecordingEncoder().encode(prompts))
    assert (cached.misses, cached.hits) == (4, 4)  # 2 + 2 encoded; a, c, a, b served from the cache


def test_least_recently_used_entry_is_evicted() -> None:
    cached = CachedEncoder(RecordingEncoder(), max_entries=2)
    cached.encode(["a", "b"])
    cached.encode(["a"])  # "a" is now more recent than "b"
    cached.encode(["c"])
    assert "a" in cached and "c" in cached and "b" not in cached and len(cached) == 2


def test_batch_with_more_prompts_than_entries_still_comes_back_whole() -> None:
    cached = CachedEncoder(RecordingEncoder(), max_entries=2)
    cached.encode(["a", "b"])
    prompts = ["a", "b", "c", "d", "e"]
    assert_same(cached.encode(prompts), RecordingEncoder().encode(prompts))
    assert len(cached) == 2


def test_cached_rows_are_copies_not_views_of_the_batch() -> None:
    cached = CachedEncoder(RecordingEncoder())
    first = cached.encode(["a", "b"])
    first.context.zero_()  # a caller scribbling on its result must not corrupt the cache
    assert_same(cached.encode(["a", "b"]), RecordingEncoder().encode(["a", "b"]))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CachedEncoder(RecordingEncoder(), max_entries=0)
    with pytest.raises(ValueError, match="single string"):
        CachedEncoder(RecordingEncoder()).encode("a")


def test_text_embedding_rows_cat_and_to() -> None:
    embedding = RecordingEncoder().encode(["a", "b", "c", "d"])
    assert len(embedding) == 4
    assert_same(embedding[1], RecordingEncoder().encode(["b"]))  # an int keeps the batch dimension
    assert_same(embedding[-1], RecordingEncoder().encode(["d"]))
    assert_same(embedding[1:3], RecordingEncoder().encode(["b", "c"]))
    assert_same(embedding[[3, 0]], RecordingEncoder().encode(["d", "a"]))
    assert_same(embedding[torch.tensor([2, 2])], RecordingEncoder().encode(["c", "c"]))
    assert_same(embedding[torch.tensor([True, False, False, True])], RecordingEncoder().encode(["a", "d"]))
    assert_same(TextEmbedding.cat([embedding[2:], embedding[:2]]), embedding[[2, 3, 0, 1]])
    half = embedding.to("cpu", torch.float16)
    assert half.context.dtype == half.pooled.dtype == torch.float16
    assert (half.context.float() - embedding.context).abs().max() < 1e-2


def test_text_embedding_refuses_inconsistent_shapes() -> None:
    with pytest.raises(ValueError, match="context"):
        TextEmbedding(torch.zeros(2, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="pooled"):
        TextEmbedding(torch.zeros(2, 5, 6), torch.zeros(2))
    with pytest.raises(ValueError, match="batch size"):
        TextEmbedding(torch.zeros(2, 5, 6), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="at least one"):
        TextEmbedding.cat([])
    with pytest.raises(ValueError, match=r"\[L, D\]"):
        TextEmbedding.cat(
            [TextEmbedding(torch.zeros(1, 5, 6), torch.zeros(1, 4)), TextEmbedding(torch.zeros(1, 7, 6), torch.zeros(1, 4))]
        )
