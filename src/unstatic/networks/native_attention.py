"""Attention on our C kernel (``attention_kernel.c``), forward for inference and forward + backward for training.

:func:`native_attention` computes ``softmax(q k^T / sqrt(d)) v`` (Vaswani et al. 2017, Eq. 1) for
``[..., N, d]`` queries and ``[..., M, d]`` keys/values in float32 whatever the input dtype, and rounds the
result once to it. When a gradient is needed the forward pass also keeps each
query row's score maximum and 1 / sum of exponentials, and the backward pass recomputes the probabilities from
them instead of storing the ``N x M`` matrix (Dao et al. 2022, "FlashAttention", Sec. 3.1, Appendix B.4): it
keeps float32 copies of q, k, v and the output plus two numbers per query row. With ``P = softmax(Z)``,
``Z = q k^T / sqrt(d)``:

    dV = P^T dO,   dP = dO V^T,   D_i = dO_i . O_i,   dZ = P * (dP - D),   dQ = dZ K / sqrt(d),   dK = dZ^T Q / sqrt(d)

The kernel reads its inputs padded to its block sizes and laid out as it walks them (:func:`_kernel_inputs`); the
scaled query ``q log2(e) / sqrt(d)`` makes the scores come out in log2 units, so its exponential is ``exp2``.

Forward and backward are registered as PyTorch operators (``torch.ops.unstatic.attention`` and
``attention_backward``, with the backward as the forward's autograd formula), so ``torch.compile`` traces
through the layout code around them and calls the kernel as one opaque operation instead of breaking the graph.
Inference calls the kernel directly, without the dispatcher's per-call cost."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from unstatic.networks.cpu_kernel import native_library

LOG2E = math.log2(math.e)


@torch.compiler.assume_constant_result  # a ctypes call that torch.compile must not trace
def _block_sizes() -> tuple[int, int]:
    """The padding the kernel needs: queries to a multiple of the first, keys to a multiple of the second."""
    lib = native_library()
    return lib.unstatic_attention_rows(), lib.unstatic_attention_keys()


def _kernel_inputs(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[..., n, d]`` queries and ``[..., m, d]`` keys/values in the kernel's float32 layout, differentiably:
    the scaled queries as rows ``[batch, heads, n_pad, d_pad]`` and keys and values transposed,
    ``[batch, heads, d_pad, m_pad]``, zero-padded (``heads`` = 1 for 3-D inputs)."""
    n, d, m = q.shape[-2], q.shape[-1], k.shape[-2]
    rows, keys = _block_sizes()
    n_pad, m_pad, d_pad = -(-n // rows) * rows, -(-m // keys) * keys, d + d % 2
    heads = q.shape[1] if q.ndim == 4 else 1
    batch = math.prod(q.shape[:-2]) // heads
    # the product keeps q's strides (the heads of a projection's output are a transposed view) and .contiguous()
    # lays it out as rows: two passes over a small tensor, ~1 % of the kernel's time; a 16-bit q is widened first,
    # as its product would be rounded before it reaches float32
    qs = q.to(torch.float32).mul(LOG2E / math.sqrt(d)).reshape(batch, heads, n, d)
    kt, vt = (x.to(torch.float32).reshape(batch, heads, m, d).transpose(-1, -2) for x in (k, v))
    if (n_pad, d_pad) != (n, d):
        qs = F.pad(qs, (0, d_pad - d, 0, n_pad - n))
    if (m_pad, d_pad) != (m, d):
        kt, vt = (F.pad(x, (0, m_pad - m, 0, d_pad - d)) for x in (kt, vt))
    return qs.contiguous(), kt.contiguous(), vt.contiguous()


def _kernel_output(out: Tensor, q: Tensor) -> Tensor:
    """The kernel's heads-last ``[batch, n_pad, heads, d_pad]`` output as an unpadded ``[..., n, d]`` view like
    ``q`` (the attention module's ``[batch, heads, n, d]`` is then a view of ``[batch, n, heads * d]``: no
    transposing copy before the output projection); a copy only for another dtype."""
    n, d = q.shape[-2], q.shape[-1]
    if out.shape[1] != n or out.shape[3] != d:  # slicing only when padded: a full slice would still cost a copy
        out = out[:, :n, :, :d]  # in the backward pass
    return out.transpose(1, 2).reshape(q.shape).to(q.dtype)


def _run(qs: Tensor, kt: Tensor, vt: Tensor, m: int, stats: bool) -> tuple[Tensor, Tensor, Tensor] | None:
    """The kernel on inputs in its layout: the heads-last output and, with ``stats``, each query row's score maximum
    and 1 / sum of exponentials (else empty tensors); ``None`` when it could not allocate its scratch memory."""
    batch, heads, n_pad, d_pad = qs.shape
    out = qs.new_empty(batch, n_pad, heads, d_pad)
    row_max, row_inv_sum = (qs.new_empty((batch, heads, n_pad) if stats else (0,)) for _ in range(2))
    failed = native_library().unstatic_attention(
        qs.data_ptr(), kt.data_ptr(), vt.data_ptr(), out.data_ptr(), row_max.data_ptr() if stats else None,
        row_inv_sum.data_ptr() if stats else None, batch * heads, n_pad, m, kt.shape[-1], d_pad, heads,
        torch.get_num_threads())
    return None if failed else (out, row_max, row_inv_sum)


@torch.library.custom_op("unstatic::attention", mutates_args=())
def attention_op(qs: Tensor, kt: Tensor, vt: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's forward pass as an operator (inputs as :func:`_kernel_inputs` makes them, ``m`` real keys):
    the heads-last output, the row maxima and the inverse row sums."""
    result = _run(qs.contiguous(), kt.contiguous(), vt.contiguous(), m, stats=True)
    if result is None:
        raise MemoryError("the attention kernel could not allocate its scratch rows")
    return result


@attention_op.register_fake
def _(qs: Tensor, kt: Tensor, vt: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    batch, heads, n_pad, d_pad = qs.shape
    return qs.new_empty(batch, n_pad, heads, d_pad), qs.new_empty(batch, heads, n_pad), qs.new_empty(batch, heads, n_pad)


@torch.library.custom_op("unstatic::attention_backward", mutates_args=())
def attention_backward_op(
    qs: Tensor, kt: Tensor, vt: Tensor, out: Tensor, dout: Tensor, row_max: Tensor, row_inv_sum: Tensor, m: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients with respect to the operator's ``qs`` (heads-last), ``kt`` and ``vt`` (module docstring)."""
    batch, heads, n_pad, d_pad = qs.shape
    dout = dout.contiguous()
    dq, dkt, dvt = qs.new_empty(batch, n_pad, heads, d_pad), torch.zeros_like(kt), torch.zeros_like(vt)
    failed = native_library().unstatic_attention_backward(
        qs.data_ptr(), kt.data_ptr(), vt.data_ptr(), out.data_ptr(), dout.data_ptr(), row_max.data_ptr(),
        row_inv_sum.data_ptr(), dq.data_ptr(), dkt.data_ptr(), dvt.data_ptr(), batch * heads, n_pad, m, kt.shape[-1],
        d_pad, heads, torch.get_num_threads())
    if failed:
        raise MemoryError("the attention kernel's backward pass could not allocate its scratch rows")
    # the kernel's gradients are those of the natural-log scores: with respect to the log2-scaled query and the
    # keys that is 1 / log2(e) of them (attention_kernel.c, unstatic_attention_backward)
    return dq.mul_(1 / LOG2E), dkt.mul_(1 / LOG2E), dvt


@attention_backward_op.register_fake
def _(qs, kt, vt, out, dout, row_max, row_inv_sum, m):
    return torch.empty_like(out), torch.empty_like(kt), torch.empty_like(vt)


def _save_for_backward(ctx, inputs, output) -> None:
    qs, kt, vt, ctx.m = inputs
    out, row_max, row_inv_sum = output
    ctx.save_for_backward(qs, kt, vt, out, row_max, row_inv_sum)


def _attention_gradients(ctx, dout: Tensor, _row_max: Tensor, _row_inv_sum: Tensor):
    qs, kt, vt, out, row_max, row_inv_sum = ctx.saved_tensors
    dq, dkt, dvt = attention_backward_op(qs, kt, vt, out, dout, row_max, row_inv_sum, ctx.m)
    # the query gradient stays heads-last ([batch, heads, n_pad, d_pad] strides over it): the projection's output
    # it flows back to is laid out that way, so no transposing copy is made on the way
    return dq.transpose(1, 2), dkt, dvt, None


attention_op.register_autograd(_attention_gradients, setup_context=_save_for_backward)


@torch.autocast("cpu", enabled=False)
def native_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor | None:
    """softmax(q k^T / sqrt(d)) v on the kernel, differentiable and traceable by ``torch.compile``; ``None``
    (inference only) when the kernel could not allocate its scratch memory, so the caller can fall back to
    PyTorch's kernel."""
    qs, kt, vt = _kernel_inputs(q, k, v)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if needs_grad or torch.compiler.is_compiling():
        return _kernel_output(attention_op(qs, kt, vt, k.shape[-2])[0], q)
    result = _run(qs, kt, vt, k.shape[-2], stats=False)
    return None if result is None else _kernel_output(result[0], q)
