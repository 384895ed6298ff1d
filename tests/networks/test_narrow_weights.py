"""bf16/float16 weights computing in float32: the numbers, the stored weights, and failures leave nothing behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unstatic.networks.group_norm import GroupNorm
from unstatic.networks.narrow_weights import compute_in_float32, computes_in_float32, input_dtype


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.norm = GroupNorm(4, 16)
        self.linear = nn.Linear(16, 8)
        self.scale = nn.Parameter(torch.tensor(2.0))  # a parameter on a module with children

    def forward(self, x):
        h = self.norm.with_silu(self.conv(x))
        return self.linear(h.mean((2, 3))) * self.scale


@pytest.mark.parametrize("narrow", [torch.bfloat16, torch.float16])
def test_float32_arithmetic_on_rounded_weights(narrow):
    torch.manual_seed(0)
    reference = Small()
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(p.to(narrow).float())  # what the narrow copy holds
    model = Small()
    model.load_state_dict(reference.state_dict())
    model.to(narrow)
    assert not computes_in_float32(model) and input_dtype(model) == narrow
    compute_in_float32(model)
    compute_in_float32(model)  # idempotent: one pair of hooks per module
    assert computes_in_float32(model) and input_dtype(model) == torch.float32
    assert len(model.conv._forward_pre_hooks) == 1
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = model(x)
        assert out.dtype == torch.float32
        assert torch.equal(out, reference(x))
        assert torch.equal(model(x.to(narrow)), reference(x.to(narrow).float()))  # narrow inputs widen too
    assert {p.dtype for p in model.parameters()} == {narrow}
    assert {v.dtype for v in model.state_dict().values()} == {narrow}
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())


def test_a_module_reading_its_childs_weights_is_hooked_itself():
    """GEGLU multiplies with its projection's weight directly (two halves, not one call of ``proj``): the hooks
    sit on GEGLU and widen ``proj``'s parameters, so it keeps that path and gives the float32 model's numbers."""
    from unstatic.networks.attention import FeedForward

    torch.manual_seed(0)
    reference = FeedForward(16)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    model = FeedForward(16)
    model.load_state_dict(reference.state_dict())
    compute_in_float32(model.to(torch.bfloat16))
    geglu = model.net[0]
    assert len(geglu._forward_pre_hooks) == 1 and not geglu.proj._forward_pre_hooks and not geglu.proj._forward_hooks
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert geglu.proj.weight.dtype == torch.bfloat16 and isinstance(geglu.proj.weight, nn.Parameter)


def test_a_failing_forward_puts_the_narrow_weights_back():
    model = compute_in_float32(Small().to(torch.bfloat16))
    with pytest.raises(RuntimeError):
        model.linear(torch.randn(2, 5))  # wrong width
    assert model.linear.weight.dtype == torch.bfloat16 and isinstance(model.linear.weight, nn.Parameter)
