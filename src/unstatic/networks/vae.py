"""The KL-regularised autoencoder of latent diffusion (Kingma & Welling 2014; Rombach et al. 2022, Sec. 3.1).

The encoder maps an image to the mean and log-variance of a diagonal Gaussian posterior ``q(z | x)`` over a
latent ``2^(n-1)`` times smaller per side (``n = len(block_out_channels)``); the decoder maps a latent back to
an image. Diffusion runs on ``(z - shift_factor) * scaling_factor``, which has roughly unit variance
(Rombach et al. 2022, Sec. 4.3.2 and Appendix D.1).

Module and parameter names match diffusers' ``AutoencoderKL`` so its checkpoints load by name:
``encoder.{conv_in, down_blocks.i.resnets.j, down_blocks.i.downsamplers.0.conv, mid_block.resnets.{0,1},
mid_block.attentions.0, conv_norm_out, conv_out}``, ``quant_conv``, ``post_quant_conv`` and
``decoder.{conv_in, mid_block, up_blocks.i.resnets.j, up_blocks.i.upsamplers.0.conv, conv_norm_out, conv_out}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unstatic.networks.attention import Attention
from unstatic.networks.group_norm import GroupNorm
from unstatic.networks.memory_format import activation_format, use_channels_last
from unstatic.networks.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from unstatic.networks.tiling import tiled_map

__all__ = ["AutoencoderKL", "DiagonalGaussian", "VAEConfig"]

_EPS = 1e-6  # GroupNorm epsilon of every norm in SD's VAE

# diffusers' AutoencoderKL.__init__ defaults: what a config.json that omits a key means.
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",),
    "up_block_types": ("UpDecoderBlock2D",),
    "block_out_channels": (64,),
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
    "scaling_factor": 0.18215,
    "shift_factor": None,
    "latents_mean": None,
    "latents_std": None,
    "force_upcast": True,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
}


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and latent scaling of an :class:`AutoencoderKL`; field names follow diffusers' config.

    The defaults are Stable Diffusion 1.x/2.x's VAE (8x downsampling, 4 latent channels).
    ``force_upcast`` is recorded from diffusers configs but unused: the model runs in the dtype it is given.
    """

    type: str = "autoencoder_kl"
    version: int = 1
    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int | tuple[int, ...] = 512
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    force_upcast: bool = True

    TYPE = "autoencoder_kl"
    VERSION = 1

    def __post_init__(self) -> None:
        for name in ("down_block_types", "up_block_types", "block_out_channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.sample_size, list):
            object.__setattr__(self, "sample_size", tuple(self.sample_size))
        if self.type != self.TYPE:
            raise ValueError(f"type must be {self.TYPE!r}, got {self.type!r}")
        if self.version != self.VERSION:
            raise ValueError(f"unsupported VAEConfig version {self.version}; this code reads version {self.VERSION}")
        n = len(self.block_out_channels)
        if n == 0:
            raise ValueError("block_out_channels must not be empty")
        for name in ("down_block_types", "up_block_types"):
            expected = "DownEncoderBlock2D" if name == "down_block_types" else "UpDecoderBlock2D"
            blocks = getattr(self, name)
            if len(blocks) != n:
                raise ValueError(f"{name} has {len(blocks)} entries but block_out_channels has {n}")
            if any(b != expected for b in blocks):
                raise ValueError(f"unsupported {name} {blocks}: only {expected!r} is implemented")
        if self.act_fn not in ("silu", "swish"):
            raise ValueError(f"unsupported act_fn {self.act_fn!r}: only 'silu' is implemented")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(f"norm_num_groups {self.norm_num_groups} does not divide block_out_channels entry {c}")
        for name in ("in_channels", "out_channels", "latent_channels", "layers_per_block"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.scaling_factor == 0:
            raise ValueError("scaling_factor must be non-zero")

    @property
    def downsampling_factor(self) -> int:
        """Image pixels per latent cell along each side."""
        return 2 ** (len(self.block_out_channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown VAEConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> VAEConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_diffusers(cls, config: dict[str, Any]) -> VAEConfig:
        """Translate a diffusers ``AutoencoderKL`` ``config.json`` dict; missing keys take diffusers' defaults,
        keys starting with ``_`` are metadata, and options this implementation cannot honour raise ValueError."""
        class_name = config.get("_class_name", "AutoencoderKL")
        if class_name != "AutoencoderKL":
            raise ValueError(f"expected a diffusers AutoencoderKL config, got _class_name {class_name!r}")
        merged = {**_DIFFUSERS_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
        unknown = sorted(set(merged) - set(_DIFFUSERS_DEFAULTS))
        if unknown:
            raise ValueError(f"unsupported diffusers AutoencoderKL option(s): {', '.join(unknown)}")
        for name in ("latents_mean", "latents_std"):
            if merged.pop(name) is not None:
                raise ValueError(f"unsupported diffusers AutoencoderKL option {name} (per-channel latent statistics)")
        return cls(**merged)


class DiagonalGaussian:
    """``N(mean, diag(exp(logvar)))``, the encoder's posterior ``q(z | x)`` (Kingma & Welling 2014, Sec. 2.4).

    Built from the encoder output ``[B, 2C, h, w]`` split into mean and log-variance along channels;
    ``logvar`` is clamped to ``[-30, 20]`` as in diffusers (and the original LDM code).
    """

    def __init__(self, parameters: Tensor) -> None:
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """``mean + std * eps`` with ``eps ~ N(0, I)`` drawn on the mean's device (the reparameterisation trick)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        return self.mean

    def kl(self, other: DiagonalGaussian | None = None) -> Tensor:
        """``KL(self || other)`` per batch element (summed over C, h, w); ``other=None`` is ``N(0, I)``
        (Kingma & Welling 2014, Appendix B)."""
        if other is None:
            terms = self.mean.square() + self.var - 1.0 - self.logvar
        else:
            terms = (self.mean - other.mean).square() / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar
        return 0.5 * terms.sum(dim=(1, 2, 3))


class DownEncoderBlock2D(nn.Module):
    """``num_layers`` residual blocks, then an optional stride-2 conv padded right/bottom (SD's VAE)."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, add_downsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels=None, groups=groups, eps=_EPS)
            for i in range(num_layers)
        )
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels, use_conv=True, padding=0)]) if add_downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class UpDecoderBlock2D(nn.Module):
    """``num_layers`` residual blocks, then an optional nearest-neighbour 2x upsampling and 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, add_upsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels=None, groups=groups, eps=_EPS)
            for i in range(num_layers)
        )
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True)]) if add_upsample else None

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


class MidBlock2D(nn.Module):
    """Residual block → single-head self-attention over all positions (optional) → residual block."""

    def __init__(self, channels: int, groups: int, add_attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(channels, channels, temb_channels=None, groups=groups, eps=_EPS) for _ in range(2))
        self.attentions = nn.ModuleList()
        if add_attention:
            self.attentions.append(
                Attention(channels, heads=1, dim_head=channels, bias=True, norm_num_groups=groups, eps=_EPS, residual_connection=True)
            )

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)


class Encoder(nn.Module):
    """conv_in → down blocks (all but the last halve the resolution) → mid block → GroupNorm → SiLU → conv_out,
    with ``2 * out_channels`` outputs (mean and log-variance) when ``double_z``."""

    def __init__(self, config: VAEConfig, double_z: bool = True) -> None:
        super().__init__()
        channels, groups = config.block_out_channels, config.norm_num_groups
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownEncoderBlock2D(channels[max(i - 1, 0)], c, config.layers_per_block, groups, add_downsample=i < len(channels) - 1)
            for i, c in enumerate(channels)
        )
        self.mid_block = MidBlock2D(channels[-1], groups, config.mid_block_add_attention)
        self.conv_norm_out = GroupNorm(groups, channels[-1], eps=_EPS)
        self.conv_out = nn.Conv2d(channels[-1], 2 * config.latent_channels if double_z else config.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_norm_out.with_silu(x))


class Decoder(nn.Module):
    """conv_in → mid block → up blocks (``layers_per_block + 1`` residual blocks each; all but the last double
    the resolution) → GroupNorm → SiLU → conv_out; channels run through ``block_out_channels`` reversed."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        channels, groups = tuple(reversed(config.block_out_channels)), config.norm_num_groups
        self.conv_in = nn.Conv2d(config.latent_channels, channels[0], 3, padding=1)
        self.mid_block = MidBlock2D(channels[0], groups, config.mid_block_add_attention)
        self.up_blocks = nn.ModuleList(
            UpDecoderBlock2D(channels[max(i - 1, 0)], c, config.layers_per_block + 1, groups, add_upsample=i < len(channels) - 1)
            for i, c in enumerate(channels)
        )
        self.conv_norm_out = GroupNorm(groups, channels[-1], eps=_EPS)
        self.conv_out = nn.Conv2d(channels[-1], config.out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_norm_out.with_silu(x))


class AutoencoderKL(nn.Module):
    """Variational autoencoder with a diagonal Gaussian posterior and a KL penalty towards ``N(0, I)``
    (Kingma & Welling 2014), used as latent diffusion's first stage (Rombach et al. 2022, Sec. 3.1).

    ``encode(x)`` gives the posterior, ``decode(z)`` the image; ``encode_latents`` / ``decode_latents`` add
    the diffusion-side scaling ``(z - shift_factor) * scaling_factor`` and optional tiling for large images.
    """

    config_class = VAEConfig

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VAEConfig()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        c = config.latent_channels
        self.quant_conv = nn.Conv2d(2 * c, 2 * c, 1) if config.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(c, c, 1) if config.use_post_quant_conv else None
        use_channels_last(self)  # conv weights in the activations' layout (see memory_format.py)

    # -- raw encoder / decoder ----------------------------------------------------------------------------

    def _check(self, x: Tensor, channels: int, what: str, multiple: int = 1) -> None:
        if x.ndim != 4:
            raise ValueError(f"{what} must be [B, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] != channels:
            raise ValueError(f"{what} has {x.shape[1]} channels; this VAE expects {channels}")
        h, w = x.shape[-2:]
        if h % multiple or w % multiple:
            raise ValueError(
                f"{what} size {h}x{w} is not divisible by {multiple} = 2^(len(block_out_channels) - 1), "
                f"the VAE's downsampling factor"
            )

    # Both halves run their activations in the conv weights' layout, channels-last by default (see
    # memory_format.py); the results are handed back as plain NCHW tensors.

    def _moments(self, x: Tensor) -> Tensor:
        h = self.encoder(x.contiguous(memory_format=activation_format(self.encoder.conv_in.weight)))
        h = self.quant_conv(h) if self.quant_conv is not None else h
        return h.contiguous()

    def _decode(self, z: Tensor) -> Tensor:
        z = z.contiguous(memory_format=activation_format(self.decoder.conv_in.weight))
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z).contiguous()

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """Posterior ``q(z | x)`` for images ``x`` ([B, in_channels, H, W], H and W multiples of the
        downsampling factor; SD expects values in [-1, 1])."""
        self._check(x, self.config.in_channels, "image", self.config.downsampling_factor)
        return DiagonalGaussian(self._moments(x))

    def decode(self, z: Tensor) -> Tensor:
        """Image for unscaled latents ``z`` ([B, latent_channels, h, w])."""
        self._check(z, self.config.latent_channels, "latents")
        return self._decode(z)

    def forward(self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Reconstruction ``decode(z)`` with ``z`` the posterior mean, or a sample of it."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator) if sample else posterior.mode())

    # -- diffusion-side latents -----------------------------------------------------------------------------

    def encode_latents(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        sample: bool = False,
        tile_size: int | tuple[int, int] | None = None,
        tile_overlap: int | tuple[int, int] | None = None,
    ) -> Tensor:
        """Latents for diffusion: ``(z - shift_factor) * scaling_factor`` with ``z`` the posterior mean (or a
        sample when ``sample``). ``tile_size`` (image pixels, a multiple of the downsampling factor) encodes in
        overlapping tiles blended linearly (default overlap: a quarter tile); see :mod:`unstatic.networks.tiling`."""
        cfg = self.config
        self._check(x, cfg.in_channels, "image", cfg.downsampling_factor)
        if tile_size is None:
            moments = self._moments(x)
        else:
            overlap = _default_overlap(tile_size, cfg.downsampling_factor) if tile_overlap is None else tile_overlap
            moments = tiled_map(self._moments, x, 1 / cfg.downsampling_factor, tile_size, overlap)
        posterior = DiagonalGaussian(moments)
        z = posterior.sample(generator) if sample else posterior.mode()
        if cfg.shift_factor is not None:
            z = z - cfg.shift_factor
        return z * cfg.scaling_factor

    def decode_latents(
        self,
        latents: Tensor,
        tile_size: int | tuple[int, int] | None = None,
        tile_overlap: int | tuple[int, int] | None = None,
    ) -> Tensor:
        """Image for diffusion latents: ``decode(latents / scaling_factor + shift_factor)``. ``tile_size``
        (latent cells) decodes in overlapping tiles blended linearly (default overlap: a quarter tile)."""
        cfg = self.config
        self._check(latents, cfg.latent_channels, "latents")
        z = latents / cfg.scaling_factor
        if cfg.shift_factor is not None:
            z = z + cfg.shift_factor
        if tile_size is None:
            return self._decode(z)
        overlap = _default_overlap(tile_size, 1) if tile_overlap is None else tile_overlap
        return tiled_map(self._decode, z, cfg.downsampling_factor, tile_size, overlap)

    # -- diffusers checkpoints ----------------------------------------------------------------------------------

    @classmethod
    def from_diffusers_folder(
        cls, folder: str | Path, variant: str | None = None, dtype: torch.dtype | None = None
    ) -> AutoencoderKL:
        """Load a diffusers ``AutoencoderKL`` folder (``config.json`` + ``diffusion_pytorch_model[.variant]
        .safetensors`` or its shards), checking that the weights match exactly (see ``weights.py``)."""
        from unstatic.networks.weights import load_diffusers_vae

        return load_diffusers_vae(folder, variant, dtype)


def _default_overlap(tile_size: int | tuple[int, int], align: int) -> int | tuple[int, int]:
    """A quarter of the tile, rounded down to a multiple of ``align``."""
    if isinstance(tile_size, int):
        return tile_size // 4 // align * align
    return tuple(t // 4 // align * align for t in tile_size)


_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def rename_legacy_attention(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Old diffusers checkpoints name the mid-block attention ``query/key/value/proj_attn``; newer ones
    ``to_q/to_k/to_v/to_out.0`` (diffusers renames them on load too). 1x1-conv shaped weights become linear."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if ".attentions." in key and len(parts) >= 2 and parts[-2] in _LEGACY_ATTENTION:
            key = ".".join(parts[:-2] + [_LEGACY_ATTENTION[parts[-2]], parts[-1]])
            if value.ndim == 4:
                value = value[:, :, 0, 0]
        renamed[key] = value
    return renamed
