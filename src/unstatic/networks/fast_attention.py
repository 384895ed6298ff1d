"""Scaled dot-product attention for the networks, tuned for CPUs.

``attention(q, k, v)`` takes ``[B, heads, N, head_dim]`` queries and ``[B, heads, M, head_dim]`` keys/values
and returns ``[B, heads, N, head_dim]``, exactly like ``torch.nn.functional.scaled_dot_product_attention``
without a mask (Vaswani et al. 2017, Eq. 1).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v."""
    return F.scaled_dot_product_attention(q, k, v)
