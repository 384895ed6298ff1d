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
    """Sizes of one call: ``g`` heads (batch x heads folded), ``n``/``m`` queries/keys, ``d`` head dim, and
    their padded values (queries to the kernel's rows per block, keys to its keys per chunk, ``d`` to even)."""

    g: int
    n: int
    m: int
    d: int
    n_pad: int
    m_pad: int
    d_pad: int

    @staticmethod
    def of(q: Tensor, k: Tensor, lib: ctypes.CDLL) -> _Layout:
        n, d, m = q.shape[-2], q.shape[-1], k.shape[-2]
        rows, keys = lib.unstatic_attention_rows(), lib.unstatic_attention_keys()
        return _Layout(math.prod(q.shape[:-2]), n, m, d, -(-n // rows) * rows, -(-m // keys) * keys, d + d % 2)

    def rows(self, x: Tensor, scale: float = 1.0) -> Tensor:
        """``[..., n, d]`` -> float32 ``[g, n_pad, d_pad]``, zero-padded (contiguous: the kernel's row layout).
        One pass over ``x`` whatever its strides (the heads of a projection's output are a transposed view)."""
        padded = (self.n_pad, self.d_pad) != (self.n, self.d)
        out = (torch.zeros if padded else torch.empty)(*x.shape[:-2], self.n_pad, self.d_pad)
        inside = out[..., : self.n, : self.d]
        if x.dtype == torch.float32 and scale != 1.0:
            torch.mul(x, scale, out=inside)
        else:  # copy first: a 16-bit product would be rounded before it reaches float32
            inside.copy_(x)
            if scale != 1.0:
                inside.mul_(scale)
        return out.view(self.g, self.n_pad, self.d_pad)

    def columns(self, x: Tensor) -> Tensor:
        """``[..., m, d]`` -> float32 ``[g, d_pad, m_pad]``, transposed and zero-padded: key positions along rows.
        One strided copy."""
        padded = (self.m_pad, self.d_pad) != (self.m, self.d)
        out = (torch.zeros if padded else torch.empty)(*x.shape[:-2], self.d_pad, self.m_pad)
        out[..., : self.d, : self.m].copy_(x.transpose(-1, -2))
        return out.view(self.g, self.d_pad, self.m_pad)

    def unrows(self, x: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """The inverse of :meth:`rows`: the unpadded ``[..., n, d]`` in ``dtype``."""
        return x[:, : self.n, : self.d].to(dtype).reshape(shape)

    def uncolumns(self, x: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """The inverse of :meth:`columns`: the unpadded ``[..., m, d]`` in ``dtype``."""
        return x[:, : self.d, : self.m].transpose(1, 2).to(dtype).reshape(shape)


def _forward(q: Tensor, k: Tensor, v: Tensor, lib: ctypes.CDLL, stats: bool):
    """``(layout, (qs, kt, vt), (out, row_max, row_inv_sum))``: the inputs in the kernel's layout, its output
    ``[g, n_pad, d_pad]`` and, with ``stats``, the row maxima and inverse sums (else ``None``); the last item is
    ``None`` when the kernel could not allocate its scratch memory."""
    layout = _Layout.of(q, k, lib)
    qs, kt, vt = layout.rows(q, LOG2E / math.sqrt(layout.d)), layout.columns(k), layout.columns(v)
    out = torch.empty(layout.g, layout.n_pad, layout.d_pad)
    row_max = torch.empty(layout.g, layout.n_pad) if stats else None
    row_inv_sum = torch.empty(layout.g, layout.n_pad) if stats else None
    failed = lib.unstatic_attention(
        qs.data_ptr(), kt.data_ptr(), vt.data_ptr(), out.data_ptr(),
        row_max.data_ptr() if stats else None, row_inv_sum.data_ptr() if stats else None,
        layout.g, layout.n_pad, layout.m, layout.m_pad, layout.d_pad, 1, torch.get_num_threads())
    return layout, (qs, kt, vt), None if failed else (out, row_max, row_inv_sum)


def _forward_heads_last(q: Tensor, k: Tensor, v: Tensor, lib: ctypes.CDLL) -> Tensor | None:
    """Inference on ``[b, heads, n, d]`` queries: the kernel writes its output as ``[b, n, heads, d]`` (returned
    as a ``[b, heads, n, d]`` view of it), the layout the output projection reads after the caller's
    ``transpose(1, 2).flatten(2)``, which is then free instead of a copy. ``None`` as :func:`_forward`."""
    layout = _Layout.of(q, k, lib)
    b, heads = q.shape[0], q.shape[1]
    qs, kt, vt = layout.rows(q, LOG2E / math.sqrt(layout.d)), layout.columns(k), layout.columns(v)
    out = torch.empty(b, layout.n_pad, heads, layout.d_pad)
    failed = lib.unstatic_attention(qs.data_ptr(), kt.data_ptr(), vt.data_ptr(), out.data_ptr(), None, None,
                                    layout.g, layout.n_pad, layout.m, layout.m_pad, layout.d_pad, heads,
                                    torch.get_num_threads())
    return None if failed else out[:, : layout.n, :, : layout.d].transpose(1, 2).to(q.dtype)


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
        return layout.unrows(out, q.shape, q.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        qs, kt, vt, out, row_max, row_inv_sum = ctx.saved_tensors
        layout, lib = ctx.layout, ctx.lib
        (q_shape, q_dtype), (k_shape, k_dtype), (v_shape, v_dtype) = ctx.inputs
        dout = layout.rows(grad)
        dq = torch.empty_like(qs)
        dkt, dvt = torch.zeros_like(kt), torch.zeros_like(vt)
        failed = lib.unstatic_attention_backward(
            qs.data_ptr(), kt.data_ptr(), vt.data_ptr(), out.data_ptr(), dout.data_ptr(), row_max.data_ptr(),
            row_inv_sum.data_ptr(), dq.data_ptr(), dkt.data_ptr(), dvt.data_ptr(),
            layout.g, layout.n_pad, layout.m, layout.m_pad, layout.d_pad, torch.get_num_threads())
        if failed:
            raise MemoryError("the attention kernel's backward pass could not allocate its scratch rows")
        # the kernel differentiates with respect to the scaled query: undo the scale (module docstring)
        dq = layout.unrows(dq.mul_(1 / math.sqrt(layout.d)), q_shape, q_dtype)
        dk = layout.uncolumns(dkt.mul_(1 / LOG2E), k_shape, k_dtype)
        return dq, dk, layout.uncolumns(dvt, v_shape, v_dtype), None


@torch.autocast("cpu", enabled=False)
def native_attention(q: Tensor, k: Tensor, v: Tensor, lib: ctypes.CDLL) -> Tensor | None:
    """softmax(q k^T / sqrt(d)) v on the kernel, differentiable; ``None`` (inference only) when the kernel could
    not allocate its scratch memory, so the caller can fall back to PyTorch's kernel."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _NativeAttention.apply(q, k, v, lib)
    if q.ndim == 4:
        return _forward_heads_last(q, k, v, lib)
    layout, _, result = _forward(q, k, v, lib, stats=False)
    return None if result is None else layout.unrows(result[0], q.shape, q.dtype)
