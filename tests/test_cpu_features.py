"""Telling whether the CPU computes bf16 natively, the warning when a run would emulate it, and bf16 models that
compute in float32 where it would."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.training.tiny import TinyImages, tiny_config
from unstatic import cpu_features
from unstatic.models import bundled_model_folder
from unstatic.models.stable_diffusion import load_any_model
from unstatic.networks.narrow_weights import computes_in_float32
from unstatic.training.trainer import train


@pytest.fixture
def flags(monkeypatch):
    def set_flags(value, machine="x86_64"):
        cpu_features.native_bf16.cache_clear()
        cpu_features.native_fp16.cache_clear()
        monkeypatch.setattr(cpu_features, "_cpu_flags", lambda: value)
        monkeypatch.setattr(cpu_features.platform, "machine", lambda: machine)

    yield set_flags
    cpu_features.native_bf16.cache_clear()
    cpu_features.native_fp16.cache_clear()


def test_native_bf16_from_the_cpu_flags(flags):
    flags({"sse2", "avx2", "fma"})
    assert cpu_features.native_bf16() is False
    flags({"avx2", "avx512f", "avx512_bf16"})
    assert cpu_features.native_bf16() is True
    flags({"avx2", "amx_bf16", "amx_tile"})
    assert cpu_features.native_bf16() is True
    flags({"fp", "asimd", "bf16"}, machine="aarch64")
    assert cpu_features.native_bf16() is True
    flags({"fp", "asimd"}, machine="aarch64")
    assert cpu_features.native_bf16() is False
    flags(None)
    assert cpu_features.native_bf16() is None  # unknown: no warning either


def test_native_fp16_from_the_cpu_flags(flags):
    flags({"avx2", "f16c"})  # F16C converts, it does not compute
    assert cpu_features.native_fp16() is False and cpu_features.emulates(torch.float16)
    flags({"avx512f", "avx512_fp16"})
    assert cpu_features.native_fp16() is True and not cpu_features.emulates(torch.float16)
    flags({"fp", "asimd", "asimdhp"}, machine="aarch64")
    assert cpu_features.native_fp16() is True
    flags(None)
    assert cpu_features.native_fp16() is None and not cpu_features.emulates(torch.float16)
    assert not cpu_features.emulates(torch.float32)


def test_warns_only_for_emulated_bf16_on_the_cpu(flags):
    flags({"avx2"})
    with pytest.warns(UserWarning, match="this CPU has no bf16 instructions"):
        assert cpu_features.warn_if_bf16_is_emulated("cpu", "sampling")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not cpu_features.warn_if_bf16_is_emulated("cuda", "sampling")
        flags({"avx512_bf16"})
        assert not cpu_features.warn_if_bf16_is_emulated("cpu", "sampling")
        flags(None)
        assert not cpu_features.warn_if_bf16_is_emulated("cpu", "sampling")


def test_bf16_training_on_such_a_cpu_says_so(flags, tmp_path):
    flags({"avx2"})
    with pytest.warns(UserWarning, match='training with precision = "bf16" runs in bf16, but this CPU has no bf16'):
        train(tiny_config(tmp_path, "steps = 1", 'precision = "bf16"'), dataset=TinyImages(), progress=False)


def test_a_model_loaded_in_bf16_on_such_a_cpu_computes_in_float32(flags):
    """bf16 weights, float32 arithmetic: exactly a float32 model whose weights were rounded to bf16."""
    flags({"avx2"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_any_model(bundled_model_folder(), dtype=torch.bfloat16).model
    assert next(model.network.parameters()).dtype == torch.bfloat16
    rounded = load_any_model(bundled_model_folder()).model.network
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.bfloat16().float())
    x, t, context = torch.randn(2, 3, 32, 32), torch.tensor([10.0, 500.0]), torch.randn(2, 7, 384)
    with torch.no_grad():
        out = model.network(x, t, context)
        assert out.dtype == torch.float32
        assert torch.equal(out, rounded(x, t, context))
    assert next(model.network.parameters()).dtype == torch.bfloat16  # still stored narrow after the call


def test_a_model_loaded_in_float16_on_a_cpu_without_fp16_computes_in_float32(flags):
    flags({"avx2", "avx512_bf16"})
    model = load_any_model(bundled_model_folder(), dtype=torch.float16).model
    assert next(model.network.parameters()).dtype == torch.float16 and computes_in_float32(model.network)


def test_a_model_loaded_in_bf16_on_a_bf16_cpu_computes_in_bf16(flags):
    flags({"avx2", "avx512_bf16"})
    model = load_any_model(bundled_model_folder(), dtype=torch.bfloat16).model
    assert not computes_in_float32(model.network)
    # a sampler's float32 state goes in as bf16 and comes back float32, without autocast
    reference = load_any_model(bundled_model_folder()).model.network
    torch.manual_seed(0)
    x, t, context = torch.randn(1, 3, 32, 32), torch.tensor([500.0]), torch.randn(1, 7, 384)
    with torch.no_grad():
        out, expected = model.network(x, t, context), reference(x, t, context)
    assert out.dtype == torch.float32
    assert float((out - expected).abs().max() / expected.abs().max()) < 0.1  # bf16 arithmetic through the U-Net
