"""Gradients of ``attention`` (training): the C kernel's backward pass against SDPA's in float64.

Tolerance: the inputs are float32-representable and the reference runs in float64, so the error is ours alone.
SDPA's own float32 gradients land at 2e-7 to 1e-6 of the largest reference entry on these shapes; we allow 4e-6,
the same order (the backward pass sums over twice as many products as the forward).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unstatic.networks import fast_attention
from unstatic.networks.cpu_kernel import native_library
from unstatic.networks.fast_attention import attention
from unstatic.networks.native_attention import native_attention

TOL = 4e-6
# (batch, heads, N, M, head_dim): training U-Nets' 16x16 and 8x8 levels, odd sizes that exercise every padding
SHAPES = {
    "unet16-d8": (4, 8, 256, 256, 8),
    "unet8-d16-few-pairs": (2, 4, 64, 64, 16),  # under NATIVE_MIN_PAIRS: SDPA's gradients
    "cross-d8": (4, 8, 300, 77, 8),
    "odd-sizes-d5": (4, 3, 261, 253, 5),
}


def _inputs(b, h, n, m, d, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(b, h, s, d, generator=gen)) for s in (n, m, m)]


def _gradients(function, inputs, grad_out, dtype):
    leaves = [x.detach().to(dtype).requires_grad_() for x in inputs]
    out = function(*leaves)
    return out, torch.autograd.grad(out, leaves, grad_out.to(out.dtype))


def _rel_err(out, ref):
    out, ref = out.detach(), ref.detach()
    return float((out.double() - ref).abs().max() / ref.abs().max())


def _spy(monkeypatch):
    calls, function = [], fast_attention.native_attention
    monkeypatch.setattr(fast_attention, "native_attention", lambda *a: calls.append(1) or function(*a))
    return calls


@pytest.mark.parametrize("name", list(SHAPES))
def test_gradients_match_sdpa_float64(name, monkeypatch):
    calls = _spy(monkeypatch)
    inputs = _inputs(*SHAPES[name])
    grad_out = torch.randn_like(inputs[0])
    ref_out, ref_grads = _gradients(F.scaled_dot_product_attention, inputs, grad_out, torch.float64)
    out, grads = _gradients(attention, inputs, grad_out, torch.float32)
    assert _rel_err(out, ref_out) <= TOL
    for grad, ref, x in zip(grads, ref_grads, inputs):
        assert grad.shape == x.shape and grad.dtype == torch.float32
        assert _rel_err(grad, ref) <= TOL
    b, h, n, m, d = SHAPES[name]
    kernel_expected = native_library() is not None and b * h * n * m >= fast_attention.NATIVE_MIN_PAIRS
    assert bool(calls) == kernel_expected


def test_sharp_logits_give_finite_gradients():
    if native_library() is None:
        pytest.skip("the C kernel cannot be built on this machine (no compiler)")
    inputs = _inputs(2, 4, 256, 256, 8, seed=1, scale=8.0)  # logits up to ~ +-300
    grad_out = torch.randn_like(inputs[0])
    _, ref_grads = _gradients(F.scaled_dot_product_attention, inputs, grad_out, torch.float64)
    _, sdpa_grads = _gradients(F.scaled_dot_product_attention, inputs, grad_out, torch.float32)
    _, grads = _gradients(attention, inputs, grad_out, torch.float32)
    for grad, sdpa, ref in zip(grads, sdpa_grads, ref_grads):
        # logits this large are ill-conditioned: compare with SDPA's own float32 error
        assert torch.isfinite(grad).all() and _rel_err(grad, ref) <= 2 * _rel_err(sdpa, ref) + TOL


def test_bf16_autocast_gradients_keep_the_input_dtypes():
    inputs = _inputs(2, 4, 256, 256, 8, seed=2)
    grad_out = torch.randn_like(inputs[0])
    _, ref_grads = _gradients(F.scaled_dot_product_attention, inputs, grad_out, torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, grads = _gradients(attention, inputs, grad_out, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    for grad, ref in zip(grads, ref_grads):
        assert grad.dtype == torch.bfloat16 and _rel_err(grad, ref) < 2e-2


def test_non_contiguous_inputs_and_gradients_flow_to_the_projection():
    """As in a U-Net: q, k, v are views of one projection's output; its weight gets the kernel's gradients."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 256, 32, generator=gen)
    weight = torch.randn(96, 32, generator=gen) / 32**0.5

    def loss(function, w):
        q, k, v = (x.to(w.dtype) @ w.T).view(2, 256, 3, 4, 8).permute(2, 0, 3, 1, 4)  # 3 x [B, heads, N, d]
        return (function(q, k, v) ** 2).sum()

    w64 = weight.double().requires_grad_()
    loss(F.scaled_dot_product_attention, w64).backward()
    w32 = weight.clone().requires_grad_()
    loss(attention, w32).backward()
    assert _rel_err(w32.grad, w64.grad) <= TOL


def test_heads_folded_into_the_batch_give_the_same_values_and_gradients():
    """3-D inputs ([batch x heads, N, d], one head per row of the kernel's heads-last layout) and the 4-D ones."""
    if native_library() is None:
        pytest.skip("no C compiler for the attention kernel")
    inputs = _inputs(2, 4, 37, 45, 6, seed=5)  # padded n, m and d
    grad_out = torch.randn_like(inputs[0])
    out4, grads4 = _gradients(native_attention, inputs, grad_out, torch.float32)
    out3, grads3 = _gradients(lambda q, k, v: native_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)),
                              inputs, grad_out.flatten(0, 1), torch.float32)
    assert torch.equal(out3, out4.flatten(0, 1)) and all(torch.equal(a, b) for a, b in zip(grads3, grads4))
    _, ref = _gradients(F.scaled_dot_product_attention, inputs, grad_out, torch.float64)
    assert all(_rel_err(g, r) <= TOL for g, r in zip(grads4, ref))


def test_without_the_c_kernel_gradients_come_from_sdpa(monkeypatch):
    monkeypatch.setattr(fast_attention, "kernels_available", lambda: False)
    calls = _spy(monkeypatch)
    inputs = _inputs(2, 4, 256, 256, 8, seed=4)
    grad_out = torch.randn_like(inputs[0])
    _, ref_grads = _gradients(F.scaled_dot_product_attention, inputs, grad_out, torch.float64)
    _, grads = _gradients(attention, inputs, grad_out, torch.float32)
    assert not calls and all(_rel_err(g, r) <= TOL for g, r in zip(grads, ref_grads))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_unet_training_gradients_with_and_without_the_kernel(checkpointing, monkeypatch):
    """A whole U-Net's parameter gradients, the kernel's attention (recomputed under gradient checkpointing)
    against PyTorch's: attention over 32 x 32 tokens with 4-wide heads, as training at full resolution runs it."""
    from unstatic.networks.unet import UNet, UNetConfig

    if native_library() is None:
        pytest.skip("the C kernel cannot be built on this machine (no compiler)")
    config = UNetConfig(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=4, num_attention_heads=2, cross_attention_dim=None,
    )
    gen = torch.Generator().manual_seed(5)
    x, t = torch.randn(4, 3, 32, 32, generator=gen), torch.tensor([10.0, 200.0, 500.0, 900.0])
    grads = []
    for kernel in (True, False):
        torch.manual_seed(0)
        model = UNet(config).train()
        model.gradient_checkpointing = checkpointing
        with monkeypatch.context() as patch:
            calls = _spy(patch)
            if not kernel:
                patch.setattr(fast_attention, "kernels_available", lambda: False)
            model(x, t).square().mean().backward()
        assert bool(calls) == kernel
        grads.append({name: p.grad for name, p in model.named_parameters()})
    scale = max(float(g.abs().max()) for g in grads[1].values())
    worst = max(float((grads[0][n] - g).abs().max()) for n, g in grads[1].items()) / scale
    assert worst <= 1e-5
