"""Scaled dot-product attention for the networks, tuned for CPUs.

``attention(q, k, v)`` takes ``[B, heads, N, head_dim]`` queries and ``[B, heads, M, head_dim]`` keys/values
and returns ``[B, heads, N, head_dim]``, exactly like ``torch.nn.functional.scaled_dot_product_attention``
without a mask (Vaswani et al. 2017, Eq. 1).

Which path runs (medians on a 2-core AVX-512 CPU, 2 threads, batch 2, 8 heads unless noted; see
``benchmarks/attention.py``):

* **Narrow heads (head dim <= 16, at least 2^17 query-key pairs over all heads: self- and cross-attention at
  32x32 and up in SD-like U-Nets of 64-128 channels and 8 heads, and at 16x16 and 8x8 in training batches):**
  ``native_attention``, our C kernel (``attention_kernel.c``, built at first use by ``cpu_kernel.py``; forward
  and backward, so training uses it too: ``native_attention.py``). Four queries share each key and value load,
  the scores of a block stay in L1, and exp2 is a vector polynomial. Measured 2026-12-06 on a 2-core AMD EPYC
  (Zen 1, AVX2), 2 threads, batch 2 x 8 heads, SDPA -> native: head dim 8, 1024 x 1024 tokens 31.9 -> 17.2 ms,
  1024 x 77 tokens 3.5 -> 2.0 ms; head dim 16, 1024 x 1024 29.1 -> 26.9 ms, 4096 x 4096 (batch 1, 2 heads) 66.7 -> 49.4 ms, 256 x 256 a tie (1.85
  vs 1.76 ms); fewer pairs, head dim 8, native vs SDPA vs explicit: batch 2 x 8 heads x 512 x 77 tokens 1.12 vs
  1.89 vs 1.62 ms, 4 x 8 x 128 x 128 0.90 vs 1.29 vs 1.31 ms, 1 x 8 x 128 x 128 (2^17 pairs) 0.32 vs 0.33 vs
  0.44 ms. At head dim 32 SDPA wins (3.2 vs 3.6 ms for 256 x 256: its GEMM micro-kernels), so wider heads
  stay on the paths below. Where the kernel cannot be built (no C compiler) these shapes take the paths below.
* **Few keys, many queries (M <= 128 and N >= 512: cross-attention on 77 text tokens at 32x32 and up):**
  ``_few_keys``, an explicit path with the heads folded into the batch. PyTorch's fused CPU kernel spends most
  of its time on per-block overhead when the key axis is this short; the explicit path does one ``bmm`` for the
  scores, one in-place ``exp2_`` and one ``bmm`` for the values: 1024 queries x 77 keys, head dim 8, batch 2:
  SDPA 2.1 ms -> 0.9-1.1 ms (fp32, quiet machine), bf16 3.1 -> 1.9 ms. With fewer queries the ~15 small ops
  of the explicit path cost more than they save (64 x 77, dim 32: 0.24 vs 0.39 ms, 256 x 77, dim 16: a tie
  within noise), so those go to SDPA. Three tricks make it fast:
  - the scale ``log2(e) / sqrt(d)`` is folded into ``q`` and the exponential is ``exp2_``, which is 3.5x
    faster than ``exp`` on this CPU (2.9 ms vs 10 ms per 16M floats) and just as accurate (1 ulp);
  - the softmax denominator comes out of the value ``bmm`` for free, from an extra row of ones in ``v^T``;
  - the value product is computed transposed, ``[d+1, M] @ [M, N]``: a GEMM with ``d`` output columns is
    2.4x slower than one with ``d`` output rows (12.2 ms vs 5.2 ms for 16 x 1024 x 1024 x 8).
  The row maximum is subtracted exactly (no bound), so the path is as robust as ``softmax``. bfloat16 inputs
  are computed in float32 (the tensors are small) and the result is rounded once, so they are more accurate
  than SDPA in bfloat16 and still 1.5-2x faster.
* **Everything else (self-attention, small cross-attention, VAE and DDPM single-head attention):** SDPA, in the
  input dtype. We measured explicit alternatives and none won in float32: for 1024 x 1024 tokens with head
  dim 8 (the U-Net's most expensive attention) the same explicit path, chunked over queries to keep the score
  block in cache, takes 19-21 ms against SDPA's 17-20 ms (the plain ``bmm`` + ``softmax`` math path: 29 ms
  chunked, 77 ms unchunked, since ``softmax`` alone costs 25-30 ms per 16M floats); for 256 tokens at head
  dim 16 and for 1 head at dim 256-512 SDPA is as fast or faster. In bfloat16 a bf16-score path was up to 2x
  faster for the VAE's 4096 tokens, but rounding the logits to bf16 costs 1-4e-2 relative error, above the
  accuracy budget, so it is not used. Measured again (2026-11) and also not used: per-(head, query-block)
  score tiles sized for the 1 MiB L2 with the row maximum replaced by a Cauchy-Schwarz bound (one pass fewer):
  17.6 ms against SDPA's 20 ms on a lightly loaded machine, but 47-73 ms against 17 ms when other processes share the
  two cores, because each of its ~200 small parallel ops pays for waking the thread pool; computing bf16
  inputs with float32 SDPA: no better than bf16 SDPA. Backward passes of these shapes use SDPA's (an explicit
  autograd path with a saved probability matrix was 2x slower at 256 and 1024 tokens, head dim 8).

Training (forward + backward, 2 threads, SDPA -> native, measured 2026-12-06 on the Zen 1 EPYC): head dim 8,
batch 32 x 8 heads x 256 x 256 tokens (a training U-Net's 16x16 level) 122 -> 65 ms; 32 x 16 heads x 64 x 64
19.3 -> 11.0 ms; batch 2 x 8 heads x 1024 x 1024 129 -> 61 ms, x 77 keys 10.9 -> 6.2 ms; head dim 16,
32 x 4 x 256 x 256: 55 -> 54 ms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from unstatic.networks.cpu_kernel import kernels_available
from unstatic.networks.native_attention import native_attention

FEW_KEYS = 128  # largest key count for the explicit path (measured crossover: 77-128 wins, 256 loses)
MANY_QUERIES = 512  # smallest query count for it (256 queries: a tie, 64: SDPA wins by 1.6x)
NATIVE_MAX_HEAD_DIM = 16  # widest head the C kernel takes: at 32 PyTorch's kernel is faster (module docstring)
NATIVE_MIN_PAIRS = 1 << 17  # fewest query x key pairs (all heads) it takes: at 2^17 a tie with SDPA (docstring)
_BLOCK = 1 << 22  # score elements per block (16 MiB in float32); larger inputs are chunked over queries


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v for ``[B, heads, N, d]`` queries and ``[B, heads, M, d]`` keys/values."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v)
    n, m, d = q.shape[-2], k.shape[-2], q.shape[-1]
    pairs = math.prod(q.shape[:-2]) * n * m
    native = (d <= NATIVE_MAX_HEAD_DIM and v.shape[-1] == d and pairs >= NATIVE_MIN_PAIRS
              and q.dtype != torch.float64)  # it computes in fp32
    if native and kernels_available() and (out := native_attention(q, k, v)) is not None:
        return out
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if m <= FEW_KEYS and n >= MANY_QUERIES and not needs_grad:
        return _few_keys(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


@torch.autocast("cpu", enabled=False)  # chooses its own precision; autocast would recast the bmm inputs
def _few_keys(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Explicit attention for short key axes: exp2 on pre-scaled scores, denominator from a ones row."""
    *lead, n, d = q.shape
    m = k.shape[-2]
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = math.log2(math.e) / math.sqrt(d)
    qs = q.reshape(-1, n, d).to(compute) * scale  # [G, N, d], scores come out in log2 units
    kt = k.reshape(-1, m, d).to(compute).transpose(1, 2)  # [G, d, M]
    g = qs.shape[0]
    vt1 = torch.ones(g, d + 1, m, dtype=compute)  # [G, d+1, M]: v^T with a row of ones for the denominator
    vt1[:, :d] = v.reshape(-1, m, d).transpose(1, 2)
    out = torch.empty(g, d + 1, n, dtype=compute)
    chunk = max(1, min(n, _BLOCK // max(1, g * m)))
    for i in range(0, n, chunk):
        s = torch.bmm(qs[:, i : i + chunk], kt)  # [G, c, M]
        s.sub_(s.amax(-1, keepdim=True)).exp2_()
        torch.bmm(vt1, s.transpose(1, 2), out=out[:, :, i : i + chunk])
    res = (out[:, :d] / out[:, d:]).transpose(1, 2)  # [G, N, d]
    return res.to(q.dtype).reshape(*lead, n, d)
