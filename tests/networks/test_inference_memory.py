"""Without autograd the networks save memory (chunked feed-forward, in-place SiLU and residual adds); the results
must be those of the plain computation, and the caller's tensors must stay untouched."""

from __future__ import annotations

import pytest
import torch

from unstatic.networks import attention as attention_module
from unstatic.networks.attention import FeedForward
from unstatic.networks.resnet import ResnetBlock2D


@pytest.mark.parametrize("activation", ["geglu", "gelu"])
def test_chunked_feed_forward_equals_the_whole(activation, monkeypatch):
    torch.manual_seed(0)
    ff = FeedForward(32, activation_fn=activation).eval()
    x = torch.randn(2, 301, 32)
    whole = ff(x).detach()  # autograd on: one piece
    monkeypatch.setattr(attention_module, "FEED_FORWARD_CHUNK_BYTES", 2 * 128 * 4 * 50)  # 50-token chunks, last partial
    calls = []
    monkeypatch.setattr(ff, "_layers", lambda t, f=ff._layers: calls.append(t.shape[0]) or f(t))
    with torch.inference_mode():
        chunked = ff(x)
    assert calls == [50] * 12 + [2]
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert ff(x).dtype == torch.bfloat16


@pytest.mark.parametrize("shortcut", [False, True])
def test_resnet_block_in_place_without_autograd(shortcut):
    torch.manual_seed(1)
    block = ResnetBlock2D(32, 64 if shortcut else 32, temb_channels=16, groups=8).eval()
    x, temb = torch.randn(2, 32, 8, 8), torch.randn(2, 16)
    x_before, temb_before = x.clone(), temb.clone()
    reference = block(x, temb).detach()
    with torch.no_grad():
        out = block(x, temb)
    assert torch.equal(x, x_before) and torch.equal(temb, temb_before)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
