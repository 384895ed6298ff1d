"""CLIPTextEncoder against transformers' CLIP text model run directly, on a tiny random model saved into
tmp folders and the tiny BPE tokenizer committed in tests/fixtures/tiny_clip/."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from unstatic.text import CachedEncoder, CLIPTextEncoder, TextEncoder, load_text_encoder  # noqa: E402

TOKENIZER = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_clip"
LAYERS = 3
PROMPTS = ["a small red star above a blue ring on a grey background", "", "a red circle", "Two Pink hearts!"]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tokenizer() -> transformers.CLIPTokenizer:
    return transformers.CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True)


def tiny_config(tokenizer: transformers.CLIPTokenizer) -> transformers.CLIPTextConfig:
    return transformers.CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=16,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="module")
def reference(tokenizer: transformers.CLIPTokenizer) -> transformers.CLIPTextModel:
    torch.manual_seed(0)
    return transformers.CLIPTextModel(tiny_config(tokenizer)).eval()


@pytest.fixture(scope="module")
def text_encoder_folder(reference: transformers.CLIPTextModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_clip") / "text_encoder"
    reference.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder(text_encoder_folder: Path) -> CLIPTextEncoder:
    return CLIPTextEncoder.from_folders(text_encoder_folder, TOKENIZER)


def reference_ids(tokenizer: transformers.CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")["input_ids"]


def without_last_layers(model: transformers.CLIPTextModel, dropped: int) -> transformers.CLIPTextModel:
    """The same weights with the last ``dropped`` transformer layers removed: its ``last_hidden_state`` is, by
    construction, layer N-dropped's output through final_layer_norm, computed without hidden_states indexing."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = LAYERS - dropped
    shorter = transformers.CLIPTextModel(config).eval()
    missing, unexpected = shorter.load_state_dict(model.state_dict(), strict=False)
    kept = LAYERS - dropped
    assert not missing
    assert all(any(f"encoder.layers.{i}." in key for i in range(kept, LAYERS)) for key in unexpected)
    return shorter


def test_shapes_padding_and_protocol(encoder: CLIPTextEncoder, tokenizer: transformers.CLIPTokenizer) -> None:
    embedding = encoder.encode(PROMPTS)
    assert isinstance(encoder, TextEncoder)
    assert (encoder.name, encoder.width, encoder.pooled_width, encoder.max_length) == ("clip", 32, 32, 77)
    assert embedding.context.shape == (4, 77, 32) and embedding.pooled.shape == (4, 32)
    assert embedding.context.dtype == embedding.pooled.dtype == torch.float32
    # the tokenizer's own padding: start token, text, then end-of-text repeated up to 77 (SD 1.x layout)
    ids = reference_ids(tokenizer, [""])[0]
    assert ids[0] == tokenizer.bos_token_id and (ids[1:] == tokenizer.pad_token_id).all()
    assert tokenizer.pad_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize("clip_skip", [1, 2, 3])
def test_clip_skip_matches_a_model_without_the_skipped_layers(
    clip_skip: int, text_encoder_folder: Path, reference: transformers.CLIPTextModel, tokenizer: transformers.CLIPTokenizer
) -> None:
    """A1111 convention: clip_skip=k uses layer N-(k-1) + final_layer_norm (diffusers' clip_skip=k-1)."""
    encoder = CLIPTextEncoder.from_folders(text_encoder_folder, TOKENIZER, clip_skip=clip_skip)
    embedding = encoder.encode(PROMPTS)
    ids = reference_ids(tokenizer, PROMPTS)
    with torch.no_grad():
        expected = without_last_layers(reference, clip_skip - 1)(ids).last_hidden_state
        full = reference(ids)
    torch.testing.assert_close(embedding.context, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embedding.pooled, full.pooler_output, atol=1e-5, rtol=1e-5)  # pooled ignores clip_skip
    if clip_skip > 1:
        assert (embedding.context - full.last_hidden_state).abs().max() > 1e-2  # the skip really changes the context


def test_diffusers_clip_skip_convention(
    text_encoder_folder: Path, reference: transformers.CLIPTextModel, tokenizer: transformers.CLIPTokenizer
) -> None:
    """diffusers' encode_prompt with clip_skip=1 takes hidden_states[-(1 + 1)] and applies final_layer_norm."""
    ids = reference_ids(tokenizer, PROMPTS)
    with torch.no_grad():
        hidden_states = reference(ids, output_hidden_states=True).hidden_states
        diffusers_skip_1 = reference.final_layer_norm(hidden_states[-(1 + 1)])
    ours = CLIPTextEncoder.from_folders(text_encoder_folder, TOKENIZER, clip_skip=2).encode(PROMPTS)
    torch.testing.assert_close(ours.context, diffusers_skip_1, atol=1e-5, rtol=1e-5)


def test_projection_model_pools_text_embeds(tokenizer: transformers.CLIPTokenizer, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = transformers.CLIPTextModelWithProjection(tiny_config(tokenizer)).eval()
    model.save_pretrained(tmp_path)
    encoder = CLIPTextEncoder.from_folders(tmp_path, TOKENIZER, clip_skip=2)
    embedding = encoder.encode(PROMPTS)
    with torch.no_grad():
        expected = model(reference_ids(tokenizer, PROMPTS))
    assert encoder.pooled_width == 16
    torch.testing.assert_close(embedding.pooled, expected.text_embeds, atol=1e-5, rtol=1e-5)


def test_batch_invariance_and_cache(encoder: CLIPTextEncoder) -> None:
    batch = encoder.encode(PROMPTS)
    for row, prompt in enumerate(PROMPTS):
        alone = encoder.encode([prompt])
        torch.testing.assert_close(batch.context[row], alone.context[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(batch.pooled[row], alone.pooled[0], atol=1e-6, rtol=0)
    cached = CachedEncoder(encoder)
    cached.encode(PROMPTS[:2])
    mixed = cached.encode(PROMPTS[::-1])
    torch.testing.assert_close(mixed.context, batch.context.flip(0), atol=1e-6, rtol=0)


def test_long_prompt_truncates_with_one_warning(encoder: CLIPTextEncoder, tokenizer: transformers.CLIPTokenizer) -> None:
    long_prompt = "a small red star above a blue ring " * 12
    dropped = len(tokenizer(long_prompt)["input_ids"]) - 77
    assert dropped > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedding = encoder.encode([long_prompt])
    assert [f"{dropped} token(s)" in str(warning.message) for warning in caught] == [True]
    assert embedding.context.shape == (1, 77, 32)


def test_bad_arguments(text_encoder_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clip_skip"):
        CLIPTextEncoder.from_folders(text_encoder_folder, TOKENIZER, clip_skip=LAYERS + 1)
    with pytest.raises(ValueError, match="max_length"):
        CLIPTextEncoder.from_folders(text_encoder_folder, TOKENIZER, max_length=78)
    with pytest.raises(FileNotFoundError, match="text_encoder="):
        CLIPTextEncoder.from_folders(tmp_path / "absent", TOKENIZER)
    with pytest.raises(FileNotFoundError, match="tokenizer="):
        CLIPTextEncoder.from_folders(text_encoder_folder, tmp_path / "absent")


def test_registry_builds_clip_from_folders(text_encoder_folder: Path, encoder: CLIPTextEncoder) -> None:
    loaded = load_text_encoder("clip", text_encoder=text_encoder_folder, tokenizer=TOKENIZER, max_length=20)
    assert isinstance(loaded, CLIPTextEncoder) and loaded.max_length == 20
    short = loaded.encode(["a red circle"])
    # causal attention: the first 20 positions do not depend on how far the padding continues
    torch.testing.assert_close(short.context[0], encoder.encode(["a red circle"]).context[0, :20], atol=1e-6, rtol=0)
