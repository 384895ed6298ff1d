"""Attention layers: multi-head (cross-)attention, the GEGLU feed-forward, the transformer block and the
spatial transformer that U-Nets put between their residual blocks (Vaswani et al. 2017; Rombach et al. 2022,
Sec. 3.3; Shazeer 2020 for GEGLU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unstatic.networks.fast_attention import attention
from unstatic.networks.group_norm import GroupNorm

FEED_FORWARD_CHUNK_BYTES = 16 * 2**20  # largest hidden activation of the feed-forward without autograd


class Attention(nn.Module):
    """Multi-head attention ``to_out(softmax(q k^T / sqrt(d)) v)`` over ``[B, N, C]`` or ``[B, C, H, W]`` input.

    ``context`` (``[B, M, cross_attention_dim]``) makes it cross-attention. ``norm_num_groups`` adds a
    GroupNorm before the projections and ``residual_connection`` adds the input back, as the attention
    blocks of DDPM's U-Net and SD's VAE do (Ho et al. 2020, Appendix B).
    """

    def __init__(
        self,
        query_dim: int,
        cross_attention_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        bias: bool = False,
        out_bias: bool = True,
        dropout: float = 0.0,
        norm_num_groups: int | None = None,
        eps: float = 1e-5,
        residual_connection: bool = False,
        rescale_output_factor: float = 1.0,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.residual_connection = residual_connection
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = GroupNorm(norm_num_groups, query_dim, eps=eps, affine=True) if norm_num_groups else None
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias)
        self.to_v = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=out_bias), nn.Dropout(dropout)])

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        residual = x
        spatial = x.ndim == 4
        if spatial:
            b, c, h, w = x.shape
            if self.group_norm is not None:
                x = self.group_norm(x)  # on the 4-D map: channels-last rows for the kernel, no transposed copy
            # [B, C, H, W] -> [B, H*W, C]: a free view for the channels-last maps our networks run on
            x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        elif self.group_norm is not None:
            x = self.group_norm(x.transpose(1, 2)).transpose(1, 2)
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        # [B, N, heads * d] -> [B, heads, N, d]
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = attention(q, k, v).transpose(1, 2).flatten(2)
        out = self.to_out[1](self.to_out[0](out))
        if spatial:
            out = out.reshape(b, h, w, c).permute(0, 3, 1, 2)  # a channels-last view, no copy
        if self.residual_connection:
            out = out + residual
        return out / self.rescale_output_factor if self.rescale_output_factor != 1.0 else out


class GEGLU(nn.Module):
    """``a * gelu(b)`` for ``[a, b] = proj(x)`` (Shazeer 2020, "GLU Variants Improve Transformer", Eq. 5)."""

    reads_child_parameters = True  # forward reads proj's weight directly (narrow_weights widens it around forward)

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        proj = self.proj
        if type(proj) is not nn.Linear or proj._forward_pre_hooks or proj._forward_hooks:
            hidden, gate = proj(x).chunk(2, dim=-1)  # through the module: hooks on it must run
            return hidden * F.gelu(gate)
        # The two halves as two products: GELU and the product run on contiguous tensors rather than on the strided
        # halves of one, ~2x faster for GELU; with the products, 20.4 vs 24.4 ms for 12,800 tokens x 64 -> 2 x 256
        # (the bundled model's 16x16 level at batch 50), 3.0 vs 3.7 ms for 2,048 tokens (benchmarks/networks.py).
        inner = proj.out_features // 2
        bias = (None, None) if proj.bias is None else (proj.bias[:inner], proj.bias[inner:])
        gate = F.gelu(F.linear(x, proj.weight[inner:], bias[1]))
        hidden = F.linear(x, proj.weight[:inner], bias[0])
        return hidden * gate if torch.is_grad_enabled() else gate.mul_(hidden)


class GELU(nn.Module):
    """``gelu(proj(x))``, optionally with the tanh approximation."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none") -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


_ACTIVATIONS = {"geglu": GEGLU, "gelu": GELU, "gelu-approximate": lambda i, o: GELU(i, o, "tanh")}


class FeedForward(nn.Module):
    """The transformer's position-wise MLP: activation layer (width ``mult * dim``), dropout, projection."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: int = 4, dropout: float = 0.0, activation_fn: str = "geglu") -> None:
        super().__init__()
        if activation_fn not in _ACTIVATIONS:
            raise ValueError(f"unsupported activation_fn {activation_fn!r}; expected one of {', '.join(_ACTIVATIONS)}")
        inner = dim * mult
        self.net = nn.ModuleList([_ACTIVATIONS[activation_fn](dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim_out or dim)])

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():  # autograd keeps every chunk's activations anyway
            return self._layers(x)
        rows = max(1, FEED_FORWARD_CHUNK_BYTES // (2 * self.net[-1].in_features * x.element_size()))
        tokens = x.shape[:-1].numel()
        if tokens <= rows:
            return self._layers(x)
        # Without autograd, the wide hidden activations (``mult`` x the width, twice that before GEGLU's gate) are
        # made for one chunk of tokens at a time: SD 1.5 at 1024 px (2 x 16,384 tokens) would need 640 MiB for
        # them at once. Tokens are independent here, so the result is the same.
        flat = x.reshape(tokens, x.shape[-1])
        first = self._layers(flat[:rows])
        out = first.new_empty(tokens, first.shape[-1])
        out[:rows] = first
        for start in range(rows, tokens, rows):
            out[start : start + rows] = self._layers(flat[start : start + rows])
        return out.view(*x.shape[:-1], out.shape[-1])

    def _layers(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to ``context`` and feed-forward, each with a residual
    (Rombach et al. 2022, Sec. 3.3 and Appendix). ``only_cross_attention`` makes the first attention attend
    to the context too."""

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        dropout: float = 0.0,
        cross_attention_dim: int | None = None,
        activation_fn: str = "geglu",
        attention_bias: bool = False,
        only_cross_attention: bool = False,
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.only_cross_attention = only_cross_attention
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=norm_elementwise_affine, eps=norm_eps)
        self.attn1 = Attention(
            dim, cross_attention_dim if only_cross_attention else None, num_attention_heads, attention_head_dim, attention_bias, dropout=dropout
        )
        self.norm2 = self.attn2 = None
        if cross_attention_dim is not None:
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=norm_elementwise_affine, eps=norm_eps)
            self.attn2 = Attention(dim, cross_attention_dim, num_attention_heads, attention_head_dim, attention_bias, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=norm_elementwise_affine, eps=norm_eps)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.attn1(self.norm1(x), context if self.only_cross_attention else None) + x
        if self.attn2 is not None:
            x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """GroupNorm → project in (1x1 conv, or linear with ``use_linear_projection``) → transformer blocks over
    the H*W tokens → project out → + input: the "spatial transformer" of latent diffusion."""

    def __init__(
        self,
        num_attention_heads: int,
        attention_head_dim: int,
        in_channels: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        cross_attention_dim: int | None = None,
        attention_bias: bool = False,
        activation_fn: str = "geglu",
        use_linear_projection: bool = False,
        only_cross_attention: bool = False,
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = GroupNorm(norm_num_groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, inner) if use_linear_projection else nn.Conv2d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner, num_attention_heads, attention_head_dim, dropout, cross_attention_dim, activation_fn,
                attention_bias, only_cross_attention, norm_elementwise_affine, norm_eps,
            )
            for _ in range(num_layers)
        )
        self.proj_out = nn.Linear(inner, in_channels) if use_linear_projection else nn.Conv2d(inner, in_channels, 1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        b, _, h, w = x.shape
        residual = x
        x = self.norm(x)
        if not self.use_linear_projection:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, -1)  # free for channels-last input, one copy for NCHW
        if self.use_linear_projection:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        if self.use_linear_projection:
            x = self.proj_out(x)
        # [B, H*W, C] -> a channels-last [B, C, H, W] view: the 1x1 conv reads it as is (a .contiguous() here
        # copied the map back to NCHW and made the conv and the residual add switch layouts)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        if not self.use_linear_projection:
            x = self.proj_out(x)
        return x + residual
