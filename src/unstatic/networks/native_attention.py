"""Attention on our C kernel (``attention_kernel.c``), forward for inference and forward + backward for training.

:func:`native_attention` computes ``softmax(q k^T / sqrt(d)) v`` (Vaswani et al. 2017, Eq. 1) for
``[..., N, d]`` queries and ``[..., M, d]`` keys/values in float32 whatever the input dtype, and rounds the
result once to it. When a gradient is needed it runs as an autograd function: the forward pass also keeps each
query row's score maximum and 1 / sum of exponentials, and the backward pass recomputes the probabilities from
them instead of storing the ``N x M`` matrix (Dao et al. 2022, "FlashAttention", Sec. 3.1, Appendix B.4): it
keeps float32 copies of q, k, v and the output plus two numbers per query row. With ``P = softmax(Z)``,
``Z = q k^T / sqrt(d)``:

    dV = P^T dO,   dP = dO V^T,   D_i = dO_i . O_i,   dZ = P * (dP - D),   dQ = dZ K / sqrt(d),   dK = dZ^T Q / sqrt(d)

The kernel reads its inputs padded to its block sizes and laid out as it walks them (``_Layout``); the scaled
query ``q log2(e) / sqrt(d)`` makes the scores come out in log2 units, so its exponential is ``exp2``.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import torch
from torch import Tensor

LOG2E = math.log2(math.e)


@dataclass(frozen=True)
class _Layout:
    """Sizes of one call: ``g`` heads (batch x heads folded: ``batch`` x ``heads``, ``heads`` = 1 for 3-D
    inputs), ``n``/``m`` queries/keys, ``d`` head dim, and their padded values (queries to the kernel's rows per
    block, keys to its keys per chunk, ``d`` to even).

    Query-like tensors (the output and its gradient, the query's gradient) are laid out heads-last,
    ``[batch, n_pad, heads, d_pad]``: a ``[batch, heads, n, d]`` view of it is what the attention module gets
    from splitting a projection's ``[batch, n, heads * d]`` output, so the transposes around the kernel are
    free instead of copies, forward and backward."""

    batch: int
    heads: int
    n: int
    m: int
    d: int
    n_pad: int
    m_pad: int
    d_pad: int

    @staticmethod
    def of(q: Tensor, k: Tensor, lib: ctypes.CDLL) -> _Layout:
        n, d, m = q.shape[-2], q.shape[-1], k.shape[-2]
        heads = q.shape[1] if q.ndim == 4 else 1
        rows, keys = lib.unstatic_attention_rows(), lib.unstatic_attention_keys()
        return _Layout(math.prod(q.shape[:-2]) // heads, heads, n, m, d, -(-n // rows) * rows, -(-m // keys) * keys,
                       d + d % 2)

    @property
    def g(self) -> int:
        return self.batch * self.heads

    def rows(self, x: Tensor, scale: float) -> Tensor:
        """``[..., n, d]`` times ``scale`` -> float32 ``[g, n_pad, d_pad]``, zero-padded (contiguous: the kernel's
        row layout). One pass over ``x`` whatever its strides (the heads of a projection's output are a transposed
        view)."""
        padded = (self.n_pad, self.d_pad) != (self.n, self.d)
        out = (torch.zeros if padded else torch.empty)(*x.shape[:-2], self.n_pad, self.d_pad)
        inside = out[..., : self.n, : self.d]
        if x.dtype == torch.float32:
            torch.mul(x, scale, out=inside)
        else:  # copy first: a 16-bit product would be rounded before it reaches float32
            inside.copy_(x).mul_(scale)
        return out.view(self.g, self.n_pad, self.d_pad)

    def columns(self, x: Tensor) -> Tensor:
        """``[..., m, d]`` -> float32 ``[g, d_pad, m_pad]``, transposed and zero-padded: key positions along rows.
        One strided copy."""
        padded = (self.m_pad, self.d_pad) != (self.m, self.d)
        out = (torch.zeros if padded else torch.empty)(*x.shape[:-2], self.d_pad, self.m_pad)
        out[..., : self.d, : self.m].copy_(x.transpose(-1, -2))
        return out.view(self.g, self.d_pad, self.m_pad)

    def uncolumns(self, x: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """The inverse of :meth:`columns`, as a view of a heads-last ``[batch, m, heads, d]`` tensor."""
        out = torch.empty(self.batch, self.m, self.heads, self.d, dtype=dtype)
        out.permute(0, 2, 3, 1).copy_(x.view(self.batch, self.heads, self.d_pad, self.m_pad)[:, :, : self.d, : self.m])
        return out.transpose(1, 2).reshape(shape)

    def heads_last(self) -> Tensor:
        """A new float32 ``[batch, n_pad, heads, d_pad]`` tensor for the kernel to write."""
        return torch.empty(self.batch, self.n_pad, self.heads, self.d_pad)

    def to_heads_last(self, x: Tensor) -> Tensor:
        """``[..., n, d]`` as a float32 heads-last tensor: ``x``'s own memory where it already is one (the
        gradient flowing back from the output projection), else a zero-padded copy."""
        x = x.reshape(self.batch, self.heads, self.n, self.d).transpose(1, 2)
        if x.dtype == torch.float32 and x.is_contiguous() and (self.n_pad, self.d_pad) == (self.n, self.d):
            return x
        out = torch.zeros(self.batch, self.n_pad, self.heads, self.d_pad)
        out[:, : self.n, :, : self.d].copy_(x)
        return out

    def from_heads_last(self, x: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """The unpadded ``[..., n, d]`` view of a heads-last tensor (a copy only for another ``dtype``)."""
        return x[:, : self.n, :, : self.d].transpose(1, 2).reshape(shape).to(dtype)


def _forward(q: Tensor, k: Tensor, v: Tensor, lib: ctypes.CDLL, stats: bool):
    """``(layout, (qs, kt, vt), (out, row_max, row_inv_sum))``: the inputs in the kernel's layout, its heads-last
    output and, with ``stats``, the row maxima and inverse sums (else ``None``); the last item is ``None`` when
    the kernel could not allocate its scratch memory."""
    layout = _Layout.of(q, k, lib)
    qs, kt, vt = layout.rows(q, LOG2E / math.sqrt(layout.d)), layout.columns(k), layout.columns(v)
    out = layout.heads_last()
    row_max = torch.empty(layout.g, layout.n_pad) if stats else None
    row_inv_sum = torch.empty(layout.g, layout.n_pad) if stats else None
    failed = lib.unstatic_attention(
        qs.data_ptr(), kt.data_ptr(), vt.data_ptr(), out.data_ptr(),
        row_max.data_ptr() if stats else None, row_inv_sum.data_ptr() if stats else None,
        layout.g, layout.n_pad, layout.m, layout.m_pad, layout.d_pad, layout.heads, torch.get_num_threads())
    return layout, (qs, kt, vt), None if failed else (out, row_max, row_inv_sum)


class _NativeAttention(torch.autograd.Function):
    """The kernel as an autograd function (module docstring for the backward pass's equations)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, lib: ctypes.CDLL) -> Tensor:
        layout, (qs, kt, vt), result = _forward(q, k, v, lib, stats=True)
        if result is None:
            raise MemoryError("the attention kernel could not allocate its scratch rows")
        out, row_max, row_inv_sum = result
        ctx.save_for_backward(qs, kt, vt, out, row_max, row_inv_sum)
        ctx.layout, ctx.lib = layout, lib
        ctx.inputs = [(x.shape, x.dtype) for x in (q, k, v)]
        return layout.from_heads_last(out, q.shape, q.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        qs, kt, vt, out, row_max, row_inv_sum = ctx.saved_tensors
        layout, lib = ctx.layout, ctx.lib
        (q_shape, q_dtype), (k_shape, k_dtype), (v_shape, v_dtype) = ctx.inputs
        dout = layout.to_heads_last(grad)
        dq = layout.heads_last()
        dkt, dvt = torch.zeros_like(kt), torch.zeros_like(vt)
        failed = lib.unstatic_attention_backward(
            qs.data_ptr(), kt.data_ptr(), vt.data_ptr(), out.data_ptr(), dout.data_ptr(), row_max.data_ptr(),
            row_inv_sum.data_ptr(), dq.data_ptr(), dkt.data_ptr(), dvt.data_ptr(),
            layout.g, layout.n_pad, layout.m, layout.m_pad, layout.d_pad, layout.heads, torch.get_num_threads())
        if failed:
            raise MemoryError("the attention kernel's backward pass could not allocate its scratch rows")
        # the kernel differentiates with respect to the scaled query: undo the scale (module docstring)
        dq = layout.from_heads_last(dq.mul_(1 / math.sqrt(layout.d)), q_shape, q_dtype)
        dk = layout.uncolumns(dkt.mul_(1 / LOG2E), k_shape, k_dtype)
        return dq, dk, layout.uncolumns(dvt, v_shape, v_dtype), None


@torch.autocast("cpu", enabled=False)
def native_attention(q: Tensor, k: Tensor, v: Tensor, lib: ctypes.CDLL) -> Tensor | None:
    """softmax(q k^T / sqrt(d)) v on the kernel, differentiable; ``None`` (inference only) when the kernel could
    not allocate its scratch memory, so the caller can fall back to PyTorch's kernel."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _NativeAttention.apply(q, k, v, lib)
    layout, _, result = _forward(q, k, v, lib, stats=False)
    return None if result is None else layout.from_heads_last(result[0], q.shape, q.dtype)
