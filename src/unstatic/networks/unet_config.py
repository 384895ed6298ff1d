"""The U-Net's configuration: a frozen dataclass saved as JSON, and the mapping from diffusers' ``config.json``
(``UNet2DModel`` and ``UNet2DConditionModel``) onto it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

# Block names are diffusers', so a config reads the same in both libraries. The attention each one carries:
DOWN_BLOCKS = {"DownBlock2D": None, "AttnDownBlock2D": "self", "CrossAttnDownBlock2D": "transformer"}
UP_BLOCKS = {"UpBlock2D": None, "AttnUpBlock2D": "self", "CrossAttnUpBlock2D": "transformer"}
MID_BLOCKS = {"UNetMidBlock2D": "self", "UNetMidBlock2DCrossAttn": "transformer"}
CLASS_EMBED_TYPES = ("embedding", "timestep", "identity", "projection", "simple_projection")
COND_KEYS = ("context", "class_labels", "added")
ADDITION_EMBED_TYPES = ("text_time",)  # SDXL's pooled text + size/crop conditioning (unet_added.py)

_PER_LEVEL = ("layers_per_block", "attention_head_dim", "num_attention_heads", "transformer_layers_per_block", "only_cross_attention")


@dataclass(frozen=True)
class UNetConfig:
    """Everything that decides the U-Net's shape. Per-level options take one value or one per resolution level
    (``down_block_types`` order; the up path uses the same level's value).

    Attention width: a transformer level has ``num_attention_heads`` heads (else ``channels //
    attention_head_dim``, else 1); a self-attention level has heads of ``attention_head_dim`` channels (else
    ``num_attention_heads`` heads, else one head over all channels).

    ``class_embed_type``: ``"embedding"`` (``nn.Embedding(num_class_embeds, ...)`` of integer labels;
    Dhariwal & Nichol 2021, Sec. 4), ``"timestep"`` (labels embedded like timesteps), ``"identity"``,
    ``"projection"`` (MLP of a ``projection_class_embeddings_input_dim`` vector) or ``"simple_projection"``.
    ``addition_embed_dim`` adds ``add_embedding(added)`` to the time embedding; ``addition_embed_type="text_time"``
    (SDXL) adds instead ``add_embedding`` of the pooled text embedding and the six size/crop numbers, each embedded
    into ``addition_time_embed_dim`` channels (:mod:`.unet_added`; the MLP reads
    ``projection_class_embeddings_input_dim``, diffusers' field). ``zero_init_out`` zeroes the
    output conv at construction so a fresh model predicts 0 (Dhariwal & Nichol 2021, Appendix; "zero_module").
    A ``CrossAttn*`` block with ``cross_attention_dim=None`` is a transformer with self-attention only.
    ``upcast_attention`` is accepted for diffusers configs and ignored: attention runs through SDPA, which
    accumulates in float32, as diffusers' ``AttnProcessor2_0`` does.
    """

    TYPE: ClassVar[str] = "unet"
    VERSION: ClassVar[int] = 1

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    mid_block_layers: int = 1
    mid_block_attention: bool = True
    mid_block_scale_factor: float = 1.0
    layers_per_block: int | tuple[int, ...] = 2
    # attention
    num_attention_heads: int | tuple[int | None, ...] | None = 8
    attention_head_dim: int | tuple[int | None, ...] | None = None
    attn_norm_num_groups: int | None = None
    cross_attention_dim: int | None = 768
    transformer_layers_per_block: int | tuple[int, ...] = 1
    use_linear_projection: bool = False
    only_cross_attention: bool | tuple[bool, ...] = False
    upcast_attention: bool = False
    # residual blocks
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    resnet_time_scale_shift: str = "default"
    dropout: float = 0.0
    downsample_padding: int = 1
    # time and class conditioning
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    time_embedding_dim: int | None = None
    class_embed_type: str | None = None
    num_class_embeds: int | None = None
    projection_class_embeddings_input_dim: int | None = None
    addition_embed_dim: int | None = None
    addition_embed_type: str | None = None
    addition_time_embed_dim: int | None = None
    # input and output
    center_input_sample: bool = False
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    zero_init_out: bool = False
    sample_size: int | tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):  # JSON gives lists; keep the config hashable and equal to the one saved
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self._validate()

    @classmethod
    def cpu_efficient(
        cls, in_channels: int = 4, out_channels: int = 4, base_channels: int = 64,
        cross_attention_dim: int | None = 384, **overrides: Any,
    ) -> UNetConfig:
        """Our default for models trained from scratch on CPUs: no attention at the full resolution (where
        SD-style U-Nets spend about half their CPU time in attention over H*W tokens with 8-wide heads) and
        32-wide heads elsewhere, the width PyTorch's CPU attention kernel handles well; linear projections
        (one GEMM over tokens instead of a 1x1 conv) and a zero-initialised output."""
        c = base_channels
        options = dict(
            in_channels=in_channels, out_channels=out_channels, block_out_channels=(c, 2 * c, 4 * c),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            mid_block_type="UNetMidBlock2DCrossAttn", num_attention_heads=None, attention_head_dim=32,
            cross_attention_dim=cross_attention_dim, use_linear_projection=True, zero_init_out=True,
        )
        return cls(**{**options, **overrides})

    # -- derived quantities ------------------------------------------------------------------------------

    @property
    def num_levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def num_downsamplings(self) -> int:
        return self.num_levels - 1

    @property
    def time_embed_dim(self) -> int:
        return self.time_embedding_dim or 4 * self.block_out_channels[0]

    @property
    def has_cross_attention(self) -> bool:
        """Whether the network reads a context: a transformer level or mid block with a ``cross_attention_dim``."""
        kinds = [DOWN_BLOCKS.get(t) for t in self.down_block_types] + [UP_BLOCKS.get(t) for t in self.up_block_types]
        kinds.append(MID_BLOCKS.get(self.mid_block_type) if self.mid_block_type and self.mid_block_layers else None)
        return self.cross_attention_dim is not None and "transformer" in kinds

    def per_level(self, name: str) -> tuple:
        """A per-level option as one value per level."""
        value = getattr(self, name)
        return tuple(value) if isinstance(value, tuple) else (value,) * self.num_levels

    def attention_shape(self, level: int, kind: str) -> tuple[int, int]:
        """``(heads, head_dim)`` of a ``kind`` attention layer at ``level`` (see the class docstring)."""
        channels = self.block_out_channels[level]
        heads, head_dim = self.per_level("num_attention_heads")[level], self.per_level("attention_head_dim")[level]
        if kind == "transformer":
            heads = heads or (channels // head_dim if head_dim else 1)
            return heads, channels // heads
        head_dim = head_dim or (channels // heads if heads else channels)
        return channels // head_dim, head_dim

    # -- checks ------------------------------------------------------------------------------------------

    def _validate(self) -> None:
        n = self.num_levels
        if n < 1 or any(c < 1 for c in self.block_out_channels):
            raise ValueError(f"block_out_channels must be positive channel counts, got {self.block_out_channels}")
        for name in ("down_block_types", "up_block_types"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries but block_out_channels has {n}")
        for name, known in (("down_block_types", DOWN_BLOCKS), ("up_block_types", UP_BLOCKS)):
            for t in getattr(self, name):
                if t not in known:
                    raise ValueError(f"unsupported entry {t!r} in {name}; expected one of {', '.join(known)}")
        if self.mid_block_type is not None and self.mid_block_type not in MID_BLOCKS:
            expected = ", ".join(MID_BLOCKS)
            raise ValueError(f"unsupported mid_block_type {self.mid_block_type!r}; expected None or one of {expected}")
        for name in _PER_LEVEL:
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries but there are {n} levels")
        if self.resnet_time_scale_shift not in ("default", "scale_shift"):
            raise ValueError(f"resnet_time_scale_shift must be 'default' or 'scale_shift', got {self.resnet_time_scale_shift!r}")
        groups = [self.norm_num_groups] + ([self.attn_norm_num_groups] if self.attn_norm_num_groups else [])
        for g in groups:
            for c in self.block_out_channels:
                if g < 1 or c % g:
                    raise ValueError(
                        f"norm_num_groups/attn_norm_num_groups {g} must divide every block_out_channels entry {self.block_out_channels}"
                    )
        for name in ("num_attention_heads", "attention_head_dim"):
            for level, v in enumerate(self.per_level(name)):
                if v is not None and not 1 <= v <= self.block_out_channels[level]:
                    raise ValueError(f"{name} {v} at level {level} must lie in [1, {self.block_out_channels[level]}] (its channels)")
        for k in (self.conv_in_kernel, self.conv_out_kernel):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"conv_in_kernel/conv_out_kernel must be odd, got {k}")
        if self.class_embed_type is not None and self.class_embed_type not in CLASS_EMBED_TYPES:
            expected = ", ".join(CLASS_EMBED_TYPES)
            raise ValueError(f"unsupported class_embed_type {self.class_embed_type!r}; expected None or one of {expected}")
        if self.class_embed_type == "embedding" and not self.num_class_embeds:
            raise ValueError("class_embed_type 'embedding' needs num_class_embeds")
        if self.class_embed_type in ("projection", "simple_projection") and not self.projection_class_embeddings_input_dim:
            raise ValueError(f"class_embed_type {self.class_embed_type!r} needs projection_class_embeddings_input_dim")
        self._validate_added()

    def _validate_added(self) -> None:
        if self.addition_embed_type is None:
            return
        if self.addition_embed_type not in ADDITION_EMBED_TYPES:
            raise ValueError(f"unsupported addition_embed_type {self.addition_embed_type!r}; expected None or "
                             f"{', '.join(ADDITION_EMBED_TYPES)}")
        if self.addition_embed_dim is not None or self.class_embed_type in ("projection", "simple_projection"):
            raise ValueError("addition_embed_type 'text_time' reads projection_class_embeddings_input_dim; it cannot be "
                             "combined with addition_embed_dim or a projection class embedding")
        time_dim, width = self.addition_time_embed_dim, self.projection_class_embeddings_input_dim
        if not time_dim or not width or width <= 6 * time_dim:
            raise ValueError("addition_embed_type 'text_time' needs addition_time_embed_dim and a larger "
                             "projection_class_embeddings_input_dim (pooled text width + 6 * addition_time_embed_dim), "
                             f"got {time_dim} and {width}")

    # -- diffusers ---------------------------------------------------------------------------------------

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any]) -> UNetConfig:
        """Map a diffusers ``UNet2DModel`` or ``UNet2DConditionModel`` ``config.json`` (as a dict) onto ours.

        Options we do not implement raise a ValueError naming the field."""
        return _config_from_diffusers(config)


# -- diffusers config.json -> UNetConfig ----------------------------------------------------------------

_COMMON_DEFAULTS = dict(
    sample_size=None, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0, layers_per_block=2,
    mid_block_scale_factor=1, downsample_padding=1, dropout=0.0, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
    resnet_time_scale_shift="default", class_embed_type=None, num_class_embeds=None, time_embedding_type="positional",
    time_embedding_dim=None,
)
# diffusers' constructor defaults (0.42), applied to fields an older config.json leaves out.
_DIFFUSERS_DEFAULTS = {
    "UNet2DModel": dict(
        _COMMON_DEFAULTS, in_channels=3, out_channels=3, attention_head_dim=8, attn_norm_num_groups=None, add_attention=True,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"), mid_block_type="UNetMidBlock2D",
        block_out_channels=(224, 448, 672, 896), downsample_type="conv", upsample_type="conv", num_train_timesteps=None,
    ),
    "UNet2DConditionModel": dict(
        _COMMON_DEFAULTS, in_channels=4, out_channels=4, attention_head_dim=8, num_attention_heads=None,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn", block_out_channels=(320, 640, 1280, 1280), only_cross_attention=False,
        cross_attention_dim=1280, transformer_layers_per_block=1, reverse_transformer_layers_per_block=None,
        encoder_hid_dim=None, encoder_hid_dim_type=None, dual_cross_attention=False, use_linear_projection=False,
        addition_embed_type=None, addition_time_embed_dim=None, upcast_attention=False, resnet_skip_time_act=False,
        resnet_out_scale_factor=1.0, time_embedding_act_fn=None, timestep_post_act=None, time_cond_proj_dim=None,
        conv_in_kernel=3, conv_out_kernel=3, projection_class_embeddings_input_dim=None, attention_type="default",
        class_embeddings_concat=False, mid_block_only_cross_attention=None, cross_attention_norm=None,
        addition_embed_type_num_heads=64,
    ),
}
# Fields that must keep these values: each names an architecture option this U-Net does not implement.
_MUST_BE = {
    "act_fn": ("silu", "swish"),
    "time_embedding_type": ("positional",),
    "downsample_type": ("conv",),
    "upsample_type": ("conv",),
    "num_attention_heads": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "addition_embed_type": (None, "text_time"),  # "text_time": SDXL (unet_added.py)
    "dual_cross_attention": (False,),
    "attention_type": ("default",),
    "class_embeddings_concat": (False,),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "time_cond_proj_dim": (None,),
    "reverse_transformer_layers_per_block": (None,),
}
def _strip_prefix(name: str) -> str:
    return name[len("UNetRes"):] if name.startswith("UNetRes") else name


def _config_from_diffusers(raw: Mapping[str, Any]) -> UNetConfig:
    class_name = raw.get("_class_name")
    if class_name is None:  # infer: only the conditional model has cross-attention settings
        class_name = "UNet2DConditionModel" if "cross_attention_dim" in raw else "UNet2DModel"
    if class_name not in _DIFFUSERS_DEFAULTS:
        raise ValueError(f"_class_name {class_name!r} is not a U-Net this loader maps; expected {' or '.join(_DIFFUSERS_DEFAULTS)}")
    defaults = _DIFFUSERS_DEFAULTS[class_name]
    given = {k: v for k, v in raw.items() if not k.startswith("_")}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        warnings.warn(f"ignoring diffusers {class_name} config fields this loader does not know: {unknown}", stacklevel=3)
    d = {**defaults, **given}
    for key, allowed in _MUST_BE.items():
        if key in d and d[key] not in allowed:
            raise ValueError(f"unsupported diffusers option {key}={d[key]!r} (supported: {', '.join(map(repr, allowed))})")
    if d["norm_num_groups"] is None:
        raise ValueError("unsupported diffusers option norm_num_groups=None (a U-Net without GroupNorm)")

    down = tuple(_strip_prefix(t) for t in d["down_block_types"])
    up = tuple(_strip_prefix(t) for t in d["up_block_types"])
    for key, types, known in (("down_block_types", down, DOWN_BLOCKS), ("up_block_types", up, UP_BLOCKS)):
        for t in types:
            if t not in known:
                raise ValueError(f"unsupported diffusers block {t!r} in {key} (supported: {', '.join(known)})")
    kinds = {DOWN_BLOCKS[t] for t in down} | {UP_BLOCKS[t] for t in up}

    class_embed_type = d["class_embed_type"]
    if class_embed_type is None and d["num_class_embeds"] is not None:
        class_embed_type = "embedding"
    elif class_embed_type is not None and class_embed_type not in CLASS_EMBED_TYPES[1:]:
        raise ValueError(f"unsupported diffusers option class_embed_type={class_embed_type!r}")
    if class_name == "UNet2DModel" and class_embed_type not in (None, "embedding", "timestep", "identity"):
        raise ValueError(f"unsupported diffusers option class_embed_type={class_embed_type!r} for UNet2DModel")

    common = dict(
        in_channels=d["in_channels"], out_channels=d["out_channels"], block_out_channels=tuple(d["block_out_channels"]),
        down_block_types=down, up_block_types=up, mid_block_scale_factor=float(d["mid_block_scale_factor"]),
        layers_per_block=d["layers_per_block"], norm_num_groups=d["norm_num_groups"], norm_eps=d["norm_eps"],
        resnet_time_scale_shift=d["resnet_time_scale_shift"], dropout=d["dropout"], downsample_padding=d["downsample_padding"],
        flip_sin_to_cos=d["flip_sin_to_cos"], freq_shift=float(d["freq_shift"]), time_embedding_dim=d["time_embedding_dim"],
        class_embed_type=class_embed_type, num_class_embeds=d["num_class_embeds"],
        center_input_sample=d["center_input_sample"], sample_size=d["sample_size"],
    )
    if class_name == "UNet2DModel":
        # attention_head_dim is the width of one head here; None means one head over all channels.
        return UNetConfig(
            **common, mid_block_type=None if d["mid_block_type"] is None else "UNetMidBlock2D", mid_block_layers=1,
            mid_block_attention=bool(d["add_attention"]), attention_head_dim=d["attention_head_dim"], num_attention_heads=None,
            attn_norm_num_groups=d["attn_norm_num_groups"], cross_attention_dim=None,
        )

    # UNet2DConditionModel: its attention_head_dim is (for historical reasons) the number of heads of the
    # transformer blocks, while its plain-attention blocks read the same number as the width of a head.
    heads = d["attention_head_dim"]
    cross = d["cross_attention_dim"]
    if isinstance(cross, (list, tuple)):
        if len(set(cross)) != 1:
            raise ValueError(f"unsupported diffusers option cross_attention_dim={list(cross)} (one width per block)")
        cross = cross[0]
    layers = d["transformer_layers_per_block"]
    if isinstance(layers, (list, tuple)) and any(isinstance(v, (list, tuple)) for v in layers):
        raise ValueError(f"unsupported diffusers option transformer_layers_per_block={layers} (per-layer counts)")
    mid_type = d["mid_block_type"]
    if mid_type is not None and mid_type not in MID_BLOCKS:
        raise ValueError(f"unsupported diffusers option mid_block_type={mid_type!r} (supported: {', '.join(MID_BLOCKS)}, None)")
    if mid_type is not None:
        kinds.add(MID_BLOCKS[mid_type] if mid_type == "UNetMidBlock2DCrossAttn" else None)
    return UNetConfig(
        **common,
        mid_block_type=mid_type,
        mid_block_layers=1 if mid_type == "UNetMidBlock2DCrossAttn" else 0,
        mid_block_attention=mid_type == "UNetMidBlock2DCrossAttn",
        num_attention_heads=heads if "transformer" in kinds else None,
        attention_head_dim=heads if "self" in kinds else None,
        cross_attention_dim=cross if "transformer" in kinds else None,
        transformer_layers_per_block=layers,
        use_linear_projection=d["use_linear_projection"],
        only_cross_attention=d["only_cross_attention"],
        upcast_attention=d["upcast_attention"],
        projection_class_embeddings_input_dim=d["projection_class_embeddings_input_dim"],
        addition_embed_type=d["addition_embed_type"],
        addition_time_embed_dim=d["addition_time_embed_dim"] if d["addition_embed_type"] else None,
        conv_in_kernel=d["conv_in_kernel"],
        conv_out_kernel=d["conv_out_kernel"],
    )
