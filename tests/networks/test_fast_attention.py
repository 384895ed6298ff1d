"""Parity of ``attention`` with SDPA in float64, for every shape class and both dispatch paths.

Tolerances. float32: the reference is SDPA in float64 on the same (float32-representable) inputs, so the
error is ours alone. SDPA's own float32 error on these shapes is 3e-7 to 1.2e-6 of max|ref| (a few ulps of
the accumulations), so we allow 2e-6: the same order, and well under the 1e-5 contract. bfloat16: the output
is rounded to bf16 (8 bits, 2**-8 = 3.9e-3 relative half-ulp near max|ref|), and SDPA in bf16 lands at
1.7e-3 to 3.8e-3; we allow 1e-2, below the 2e-2 contract.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unstatic.networks import fast_attention
from unstatic.networks.cpu_kernel import native_library
from unstatic.networks.fast_attention import attention
from unstatic.networks.native_attention import native_attention

# (batch, heads, N, M, head_dim); head_dim <= NATIVE_MAX_HEAD_DIM with enough scores takes the C kernel, else
# M <= FEW_KEYS and N >= MANY_QUERIES the explicit path, the rest SDPA; the C kernel is also checked directly on
# every shape, and the explicit path on every shape with M <= FEW_KEYS
SHAPES = {
    "unet32-self-d8": (2, 8, 1024, 1024, 8),
    "unet32-cross-d8": (2, 8, 1024, 77, 8),
    "unet16-self-d16": (1, 8, 256, 256, 16),
    "unet16-cross-d16": (2, 8, 256, 77, 16),
    "unet8-self-d32": (2, 8, 64, 64, 32),
    "unet8-cross-d32": (2, 8, 64, 77, 32),
    "vae-d512": (1, 1, 256, 256, 512),
    "vae-few-keys-d512": (1, 1, 100, 128, 512),
    "ddpm-d256": (2, 1, 256, 256, 256),
    "odd-sizes-d5": (1, 3, 37, 29, 5),  # no length a multiple of the C kernel's blocks
}
TOL = {torch.float32: 2e-6, torch.bfloat16: 1e-2}


def _inputs(b, h, n, m, d, dtype, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return tuple((scale * torch.randn(b, h, s, d, generator=gen)).to(dtype) for s in (n, m, m))


def _rel_err(out, ref):
    return float((out.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", list(SHAPES))
def test_matches_sdpa_float64(name, dtype):
    q, k, v = _inputs(*SHAPES[name], dtype)
    out = attention(q, k, v)
    assert out.shape == q.shape and out.dtype == dtype
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    assert _rel_err(out, ref) <= TOL[dtype]
    if k.shape[-2] <= fast_attention.FEW_KEYS:
        direct = fast_attention._few_keys(q, k, v)
        assert direct.dtype == dtype and _rel_err(direct, ref) <= TOL[dtype]
    if native_library() is not None:
        native = native_attention(q, k, v)
        assert native.dtype == dtype and _rel_err(native, ref) <= TOL[dtype]


def _spy(monkeypatch, name):
    calls, function = [], getattr(fast_attention, name)
    monkeypatch.setattr(fast_attention, name, lambda *a: calls.append(1) or function(*a))
    return calls


def test_narrow_heads_take_the_c_kernel_and_sharp_logits_are_stable(monkeypatch):
    if native_library() is None:
        pytest.skip("the C kernel cannot be built on this machine (no compiler)")
    calls = _spy(monkeypatch, "native_attention")
    q, k, v = _inputs(2, 8, 256, 300, 8, torch.float32, scale=8.0)  # logits up to ~ +-300
    out = attention(q, k, v)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    sdpa_err = _rel_err(F.scaled_dot_product_attention(q, k, v), ref)
    assert calls and torch.isfinite(out).all() and _rel_err(out, ref) <= 2 * sdpa_err + TOL[torch.float32]


def test_without_the_c_kernel_the_same_shapes_use_pytorch(monkeypatch):
    monkeypatch.setattr(fast_attention, "kernels_available", lambda: False)
    native, few_keys = _spy(monkeypatch, "native_attention"), _spy(monkeypatch, "_few_keys")
    q, k, v = _inputs(2, 8, 1024, 77, 8, torch.float32, seed=5)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    assert _rel_err(attention(q, k, v), ref) <= TOL[torch.float32]
    assert few_keys and not native


def test_few_keys_path_is_taken_and_sharp_logits_are_stable(monkeypatch):
    monkeypatch.setattr(fast_attention, "kernels_available", lambda: False)  # where the C kernel cannot be built
    # logits up to ~ +-300: exp would overflow without the exact max subtraction
    q, k, v = _inputs(2, 8, 512, 77, 8, torch.float32, scale=8.0)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    calls = _spy(monkeypatch, "_few_keys")
    out = attention(q, k, v)
    # logits this large are ill-conditioned (one ulp of 300 is 3e-5), so compare with SDPA's own fp32 error
    sdpa_err = _rel_err(F.scaled_dot_product_attention(q, k, v), ref)
    assert calls and torch.isfinite(out).all() and _rel_err(out, ref) <= 2 * sdpa_err + TOL[torch.float32]


def test_chunked_few_keys(monkeypatch):
    monkeypatch.setattr(fast_attention, "_BLOCK", 16 * 77 * 100)  # 100-query chunks, last one partial
    q, k, v = _inputs(2, 8, 1024, 77, 8, torch.float32, seed=1)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    assert _rel_err(fast_attention._few_keys(q, k, v), ref) <= TOL[torch.float32]


@pytest.mark.parametrize("b", [1, 2])  # at batch 1 the view reshapes to [heads, N, d] without a copy
@pytest.mark.parametrize("d", [8, 16])
@pytest.mark.parametrize("m", [77, 256])
def test_non_contiguous_inputs(m, d, b):
    # [B, N, heads, d] storage viewed as [B, heads, N, d], as a U-Net's projections produce
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(b, 1024, 8, d, generator=gen).transpose(1, 2)
    k, v = (torch.randn(b, m, 8, d, generator=gen).transpose(1, 2) for _ in range(2))
    assert not q.is_contiguous()
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    assert _rel_err(attention(q, k, v), ref) <= TOL[torch.float32]


@pytest.mark.parametrize("d", [8, 16])
@pytest.mark.parametrize("m", [77, 256])
def test_batch_invariance(m, d):
    q, k, v = _inputs(3, 8, 1024, m, d, torch.float32, seed=3)
    full = attention(q, k, v)
    for i in range(3):
        torch.testing.assert_close(attention(q[i : i + 1], k[i : i + 1], v[i : i + 1]), full[i : i + 1],
                                   rtol=1e-6, atol=1e-6)


def test_cpu_paths_work_under_bf16_autocast():
    """Networks run in bf16 under autocast: the explicit path and the C kernel must keep their own precision."""
    import torch.nn.functional as F

    from unstatic.networks.fast_attention import attention

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 8, generator=gen).bfloat16() for n in (1024, 77, 77))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v)
    reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    assert out.dtype == torch.bfloat16
    assert float((out.double() - reference).abs().max() / reference.abs().max()) < 2e-2
