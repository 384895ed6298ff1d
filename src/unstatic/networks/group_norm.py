"""GroupNorm (Wu & He 2018, Eq. 1-3), optionally fused with the SiLU that follows it, on our C kernel.

:class:`GroupNorm` is ``nn.GroupNorm`` (same parameters, same state-dict keys, same results to float32 rounding)
whose float32 channels-last maps run on ``group_norm_kernel.c``, forward and backward; ``norm.with_silu(x)``
computes ``silu(norm(x))`` (Elfwing et al. 2018) in the same passes, as the residual blocks and the networks'
output heads use it. Everything else (NCHW maps, other dtypes, channel counts that are not a multiple of 8, no
C compiler) goes to ``F.group_norm`` and ``F.silu``, channels-last maps by way of an NCHW copy when training.

Why: PyTorch's CPU GroupNorm backward is ~13x slower on channels-last maps than on NCHW ones (12 vs 0.9 ms for a
32 x 32 x 32 x 32 map on 2 cores), which cancelled out the faster channels-last convolutions in training; its
forward is up to 2x slower too, a separate SiLU costs a pass over the map each way, and on channels-last maps
whose channels are constant (a fully masked image makes them) its statistics are off by 1e-3 where ours are exact.
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unstatic.networks.cpu_kernel import kernels_available, native_library

VECTOR = 8  # the kernel's floats per vector: channel counts must be a multiple


def _channels_last_rows(x: Tensor) -> bool:
    """Whether ``x`` ([B, C, *spatial]) is laid out as [B, pixels, C] rows, channels innermost."""
    return x.movedim(1, -1).is_contiguous()


def _kernel_applies(x: Tensor, norm: nn.GroupNorm) -> bool:
    return (
        x.dtype == torch.float32 and x.device.type == "cpu" and x.ndim >= 3 and norm.affine
        and norm.weight.dtype == torch.float32 and norm.bias.dtype == torch.float32 and x.shape[1] % VECTOR == 0
        and x.numel() > 0 and _channels_last_rows(x)
    )


def _pointer(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _forward(x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, silu: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's forward pass: the output (in x's strides: the same [B, pixels, C] rows), and each group's mean
    and 1 / std."""
    b, c = x.shape[:2]
    y = torch.empty_like(x)
    mean, rstd = x.new_empty(b, groups), x.new_empty(b, groups)
    failed = native_library().unstatic_group_norm(
        _pointer(x), _pointer(weight), _pointer(bias), _pointer(y), _pointer(mean), _pointer(rstd),
        b, x.numel() // (b * c), c, groups, eps, int(silu), torch.get_num_threads(),
    )
    if failed:
        raise MemoryError("the GroupNorm kernel could not allocate its scratch memory")
    return y, mean, rstd


# Training runs the kernel as PyTorch operators, the backward pass as the forward's autograd formula, so that
# torch.compile calls them as opaque operations instead of breaking its graph at a ctypes call. Inference calls
# _forward directly, without the dispatcher's per-call cost.
group_norm_op = torch.library.custom_op("unstatic::group_norm", _forward, mutates_args=())


@group_norm_op.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, silu: bool) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(x), x.new_empty(x.shape[0], groups), x.new_empty(x.shape[0], groups)


@torch.library.custom_op("unstatic::group_norm_backward", mutates_args=())
def group_norm_backward_op(
    dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, rstd: Tensor, groups: int, silu: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients with respect to x, weight and bias (the derivation is in group_norm_kernel.c)."""
    b, c = x.shape[:2]
    dy = dy if dy.stride() == x.stride() else torch.empty_like(x).copy_(dy)  # the kernel reads x's rows
    dx, dweight, dbias = torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias)
    failed = native_library().unstatic_group_norm_backward(
        _pointer(dy), _pointer(x), _pointer(mean), _pointer(rstd), _pointer(weight), _pointer(bias),
        _pointer(dx), _pointer(dweight), _pointer(dbias), b, x.numel() // (b * c), c, groups, int(silu),
        torch.get_num_threads(),
    )
    if failed:
        raise MemoryError("the GroupNorm kernel could not allocate its scratch memory")
    return dx, dweight, dbias


@group_norm_backward_op.register_fake
def _(dy, x, weight, bias, mean, rstd, groups, silu):
    return torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias)


def _save_for_backward(ctx, inputs, output) -> None:
    """Saves the input and each group's mean and 1/std (not the output)."""
    x, weight, bias, ctx.groups, _, ctx.silu = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)


def _group_norm_gradients(ctx, dy: Tensor, _dmean: Tensor, _drstd: Tensor):
    return *group_norm_backward_op(dy, *ctx.saved_tensors, ctx.groups, ctx.silu), None, None, None


group_norm_op.register_autograd(_group_norm_gradients, setup_context=_save_for_backward)


def group_norm(x: Tensor, norm: nn.GroupNorm, silu: bool = False) -> Tensor:
    """``norm(x)``, or ``silu(norm(x))`` with ``silu``: on the C kernel where it applies, else PyTorch's."""
    training = torch.is_grad_enabled() and (x.requires_grad or norm.weight.requires_grad or norm.bias.requires_grad)
    if _kernel_applies(x, norm) and kernels_available():
        # under autocast the kernel's float32 in and out is what autocast gives GroupNorm anyway
        args = (x, norm.weight.contiguous(), norm.bias.contiguous(), norm.num_groups, norm.eps, silu)
        return (group_norm_op if training or torch.compiler.is_compiling() else _forward)(*args)[0]
    if training and x.device.type == "cpu" and x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        # PyTorch's CPU GroupNorm backward is several times slower on channels-last maps: run it in NCHW, for two
        # copies (which inference skips: on an SD VAE decode at 512 px they cost 18 %)
        y = F.group_norm(x.contiguous(), norm.num_groups, norm.weight, norm.bias, norm.eps)
        y = y.contiguous(memory_format=torch.channels_last)
    else:
        y = F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return F.silu(y, inplace=not torch.is_grad_enabled()) if silu else y


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` on the C kernel for float32 channels-last maps; :meth:`with_silu` fuses the SiLU after it."""

    def forward(self, x: Tensor, silu: bool = False) -> Tensor:
        return group_norm(x, self, silu)

    def with_silu(self, x: Tensor) -> Tensor:
        """``silu(self(x))`` in one pass each way (through ``__call__``, so that module hooks see it)."""
        return self(x, silu=True)
