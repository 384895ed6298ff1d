"""GroupNorm (+ SiLU) on the C kernel: values and gradients as PyTorch's, and PyTorch's path where it does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unstatic.networks import group_norm as group_norm_module
from unstatic.networks.cpu_kernel import native_library
from unstatic.networks.group_norm import GroupNorm

needs_kernel = pytest.mark.skipif(native_library() is None, reason="no C compiler: the kernel is not built")


def _norm(groups: int, channels: int, seed: int = 0) -> GroupNorm:
    torch.manual_seed(seed)
    norm = GroupNorm(groups, channels, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    return norm


def _reference(x: torch.Tensor, norm: nn.GroupNorm, silu: bool) -> torch.Tensor:
    """PyTorch's GroupNorm (+ SiLU) in float64 on an NCHW copy."""
    y = F.group_norm(x.double().contiguous(), norm.num_groups, norm.weight.double(), norm.bias.double(), norm.eps)
    return F.silu(y) if silu else y


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b).abs().max() / b.abs().max())


def _channels_last_input(shape: tuple[int, ...], offset: float = 0.0, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.randn(shape) * 3 + offset
    return (x.to(memory_format=torch.channels_last) if x.ndim == 4 else x).requires_grad_()


@needs_kernel
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize(
    ("shape", "groups"),
    [((4, 64, 16, 16), 32), ((1, 32, 9, 7), 8), ((2, 320, 8, 8), 32), ((3, 16, 5, 5), 4), ((2, 8, 1, 1), 2)],
)
def test_values_and_gradients_match_float64(shape, groups, silu, monkeypatch):
    calls = []
    for name in ("_forward", "group_norm_op"):  # inference's direct call and training's operator
        function = getattr(group_norm_module, name)
        monkeypatch.setattr(group_norm_module, name, lambda *a, function=function: calls.append(1) or function(*a))
    norm = _norm(groups, shape[1])
    x = _channels_last_input(shape, offset=2.0)
    y = norm.with_silu(x) if silu else norm(x)
    assert calls, "the kernel did not run"
    assert y.is_contiguous(memory_format=torch.channels_last)  # the output keeps the input's layout
    with torch.no_grad():  # inference calls the kernel without the operator: the same numbers
        assert torch.equal(norm.with_silu(x) if silu else norm(x), y)
    assert len(calls) == 2
    g = torch.randn(shape, dtype=torch.float64)
    grads = torch.autograd.grad(y, [x, norm.weight, norm.bias], g.float())
    x64 = x.detach().double().requires_grad_()
    norm64 = _norm(groups, shape[1]).double()
    ref = _reference(x64, norm64, silu)
    ref_grads = torch.autograd.grad(ref, [x64, norm64.weight, norm64.bias], g)
    for got, want in zip((y, *grads), (ref, *ref_grads)):
        assert _relative(got, want) < 2e-6


@needs_kernel
def test_statistics_stay_exact_far_from_zero():
    """A map whose mean is 1e4 times its spread: the variance is summed around the mean, not as E[x^2] - E[x]^2
    (PyTorch's float32 CPU kernel is off by ~100 % on this map)."""
    norm = _norm(8, 32)
    torch.manual_seed(2)
    x = (1e4 + torch.randn(2, 32, 12, 12)).to(memory_format=torch.channels_last)
    assert _relative(norm(x), _reference(x, norm, False)) < 1e-3  # float32 x itself carries 1e4 * 6e-8 of rounding


@needs_kernel
def test_token_rows_of_a_transposed_sequence():
    """[B, C, N] as the transpose of [B, N, C] tokens (the attention's 3-D path) is a channels-last layout too."""
    norm = _norm(4, 16)
    tokens = torch.randn(2, 10, 16)
    x = tokens.transpose(1, 2)
    assert _relative(norm(x), _reference(x, norm, False)) < 2e-6


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(2, 32, 6, 6),                                          # NCHW
        lambda: torch.randn(2, 12, 6, 6).to(memory_format=torch.channels_last),   # 12 channels: not whole vectors
        lambda: torch.randn(2, 32, 6, 6, dtype=torch.bfloat16).to(memory_format=torch.channels_last),
    ],
)
def test_pytorch_runs_what_the_kernel_does_not_take(make, monkeypatch):
    monkeypatch.setattr(group_norm_module, "_forward", lambda *a: pytest.fail("the kernel ran on an input it does not take"))
    x = make()
    norm = _norm(4, x.shape[1]).to(x.dtype)
    with torch.no_grad():
        y = norm.with_silu(x)
        assert torch.equal(y, F.silu(F.group_norm(x, 4, norm.weight, norm.bias, norm.eps)))
    assert y.stride() == x.stride()
    # training: channels-last maps go through an NCHW copy (PyTorch's channels-last backward is the slow one)
    leaf = x.detach().requires_grad_()
    y = norm.with_silu(leaf)
    assert torch.equal(y, F.silu(F.group_norm(x.contiguous(), 4, norm.weight, norm.bias, norm.eps)))
    assert y.stride() == x.stride()


def test_without_a_compiler_the_results_are_pytorchs(monkeypatch):
    monkeypatch.setattr(group_norm_module, "kernels_available", lambda: False)
    norm = _norm(8, 32)
    x = torch.randn(2, 32, 6, 6).to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(norm(x), F.group_norm(x, 8, norm.weight, norm.bias, norm.eps))


def test_same_parameters_and_state_dict_as_torch():
    ours, theirs = GroupNorm(8, 32), nn.GroupNorm(8, 32)
    assert isinstance(ours, nn.GroupNorm)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())


@needs_kernel
def test_gradient_for_an_nchw_output_gradient():
    """The backward pass reads the gradient in the input's layout: another layout is copied first, not misread."""
    norm = _norm(8, 32)
    x = _channels_last_input((2, 32, 5, 5))
    g = torch.randn(2, 32, 5, 5)  # NCHW-contiguous
    got = torch.autograd.grad(norm.with_silu(x), x, g)[0]
    x64 = x.detach().double().requires_grad_()
    want = torch.autograd.grad(_reference(x64, norm.double(), True), x64, g.double())[0]
    assert _relative(got, want) < 2e-6


@needs_kernel
def test_constant_channels_normalise_to_the_bias():
    """Each group one constant channel (a conv's bias over an all-zero image, as a fully masked image makes): the
    normalised map is exactly 0, so the output is silu(bias); the mean must come out exact, or 1/sqrt(eps) = 1000
    times its rounding shows (PyTorch's own channels-last CPU kernel is 1e-3 off here)."""
    norm = _norm(32, 32)  # one channel per group
    norm.eps = 1e-6
    torch.manual_seed(3)
    x = (torch.randn(1, 32, 1, 1) * 0.3).expand(1, 32, 16, 16).contiguous(memory_format=torch.channels_last)
    expected = F.silu(norm.bias.detach().double()).view(1, 32, 1, 1).expand(1, 32, 16, 16)
    assert float((norm.with_silu(x).detach().double() - expected).abs().max()) < 2e-5
