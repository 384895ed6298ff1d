"""The training configuration: nested frozen dataclasses, read from TOML (or the JSON a run saved), with
``section.field=value`` overrides from the command line. The resolved config is saved with every checkpoint."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from unstatic.models.spec import ScheduleSpec
from unstatic.networks.weights import strip_type_and_version

TASKS = ("diffusion", "autoencoder")
PRECISIONS = ("fp32", "bf16")
EXPORT_DTYPES = ("float32", "float16", "bfloat16")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class DataConfig:
    """``name`` picks a dataset (``shapes``, ``folder``, ``digits``); ``options`` go to its constructor.

    ``vae``: a VAE folder (as an autoencoder run exports it, or an SD ``vae/`` in our format): the diffusion model
    is then trained on the VAE's latents (latent diffusion, Rombach et al. 2022), encoded once and cached in
    ``latent_cache`` (default ``<output_dir>/latents``; the cache is keyed by the VAE's weights and the data
    settings, so another VAE or dataset never reuses it)."""

    name: str = "shapes"
    resolution: int = 32
    options: dict = field(default_factory=dict)
    num_workers: int = 0
    vae: str = ""
    latent_cache: str = ""


@dataclass(frozen=True)
class ModelConfig:
    """The network: ``base_channels`` of our CPU-efficient U-Net (see ``UNetConfig.cpu_efficient``), or a full
    ``unet`` field mapping (UNetConfig fields) that replaces it."""

    base_channels: int = 32
    unet: dict = field(default_factory=dict)
    dropout: float = 0.0
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class DiffusionConfig:
    """What is learned: the parameterisation, the schedule, the noise levels trained on and their weights."""

    prediction: str = "edm"
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    sigma_data: float = 0.5
    noise_levels: str = "log_normal"
    noise_level_options: dict = field(default_factory=dict)
    weighting: str = "edm"
    weighting_options: dict = field(default_factory=dict)
    offset_noise: float = 0.0
    conditioning: str = "none"
    cond_dropout: float = 0.1
    text_encoder: str = "minilm"
    text_max_length: int = 32
    inpainting: bool = False  # train an inpainting model: mask and masked image as extra input channels


@dataclass(frozen=True)
class AutoencoderConfig:
    """A KL-regularised autoencoder for latent diffusion (``task = "autoencoder"``; Rombach et al. 2022, Sec. 3.1
    and Appendix G): the architecture (diffusers' ``AutoencoderKL`` fields; the latent is
    ``2^(len(block_out_channels) - 1)`` times smaller per side) and the loss weights (``training/autoencoder.py``).

    ``kl_weight`` has the meaning it has in LDM's sums (1e-6 there): the KL to N(0, I), summed over the latent,
    per pixel value of the image. ``scale_images`` images are encoded at every export to set the latent
    ``scaling_factor`` to 1 / their latents' standard deviation (LDM, Sec. 4.3.2). ``crop`` trains on random
    ``crop`` x ``crop`` windows of the images (0: whole images), as LDM trains its autoencoders on 256-pixel crops
    and applies them to larger images: a convolutional autoencoder (``mid_block_add_attention = false``) computes
    the same function on a crop as inside the whole image, at a fraction of the cost.

    ``disc_weight`` > 0 adds LDM's patch discriminator from step ``disc_start`` on (``training/discriminator.py``):
    ``disc_layers`` strided 4x4 convolutions starting ``disc_width`` wide (LDM: weight 0.5, 3 layers, 64 wide,
    start 50,001 for SD's VAE); the images (or crops) must be at least ``3 * 2^disc_layers`` pixels wide."""

    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8  # keep several channels per group (SD: 4): see build_autoencoder
    mid_block_add_attention: bool = True
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    ssim_weight: float = 0.5
    kl_weight: float = 1e-6
    scale_images: int = 256
    crop: int = 0
    disc_weight: float = 0.0
    disc_start: int = 5000
    disc_width: int = 64
    disc_layers: int = 3


@dataclass(frozen=True)
class OptimConfig:
    """AdamW (Loshchilov & Hutter 2019) with linear warm-up then a constant or cosine learning rate."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup_steps: int = 100
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True


@dataclass(frozen=True)
class TrainConfig:
    TYPE: ClassVar[str] = "train"
    VERSION: ClassVar[int] = 1

    output_dir: str = "runs/unstatic"
    task: str = "diffusion"  # or "autoencoder": train a VAE for latent diffusion ([autoencoder] section)
    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    seed: int = 0
    precision: str = "fp32"
    device: str = "auto"
    compile: bool = False
    time_limit_minutes: float = 0.0  # stop (saving a checkpoint and samples) after this long; 0 = no limit
    # A model folder (as training exports) whose weights start a new run, e.g. to fine-tune or go on training a
    # shipped model; the optimizer starts afresh. Ignored when output_dir already holds a checkpoint to resume.
    init_from: str = ""
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    sample_every: int = 500
    sample_count: int = 16
    sample_steps: int = 20
    sample_sampler: str = "dpmpp_2m"
    sample_guidance: float = 1.0
    export_dtype: str = "float32"  # how model/ stores the EMA weights; 16-bit halves it and loads as float32
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        _check_positive(self, "steps", "batch_size", "grad_accum", "log_every", "checkpoint_every", "keep_checkpoints")
        _check_positive(self.data, "resolution")
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.task == "autoencoder" and self.data.vae:
            raise ValueError("data.vae trains a diffusion model on a VAE's latents; an autoencoder run trains on images")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.export_dtype not in EXPORT_DTYPES:
            raise ValueError(f"export_dtype {self.export_dtype!r} is not one of {', '.join(EXPORT_DTYPES)}")
        if self.optim.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"optim.lr_schedule {self.optim.lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= self.diffusion.cond_dropout <= 1:
            raise ValueError(f"diffusion.cond_dropout must be in [0, 1], got {self.diffusion.cond_dropout}")
        if not 0 <= self.optim.ema_decay < 1:
            raise ValueError(f"optim.ema_decay must be in [0, 1), got {self.optim.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "version": self.VERSION, **dataclasses.asdict(self)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _check_positive(obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(obj, name)}")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a ``.toml`` file (or a run's saved ``train_config.json``), apply ``key.sub=value`` overrides
    (values parsed as TOML: ``optim.lr=1e-4``, ``data.name="folder"`` or ``data.name=folder``), validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        if path.suffix == ".json":
            data = strip_type_and_version(TrainConfig, json.loads(path.read_text()))
        else:
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as error:
                raise ValueError(f"{path} is not valid TOML: {error}") from error
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {override!r} is not of the form section.field=value")
        _set_path(data, key.strip().split("."), _parse_value(text.strip()))
    return config_from_mapping(TrainConfig, data)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as folder or bf16


def _set_path(data: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ValueError(f"cannot set {'.'.join(keys)}: {key} is not a section")
    data[keys[-1]] = value


def config_from_mapping(config_class: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build a (nested) config dataclass from plain data, naming any unknown or mistyped field."""
    known = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown config field(s) {', '.join(where + u for u in unknown)}; known: {', '.join(sorted(known))}")
    values = {}
    for name, value in data.items():
        nested = _nested_class(config_class, name)
        if nested is not None:
            if not isinstance(value, Mapping):
                raise ValueError(f"config field {where}{name} must be a section (a table), got {value!r}")
            values[name] = config_from_mapping(nested, value, f"{where}{name}.")
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    try:
        return config_class(**values)
    except TypeError as error:
        raise ValueError(f"bad config{(' section ' + where.rstrip('.')) if where else ''}: {error}") from error


def _nested_class(config_class: type, name: str) -> type | None:
    value = getattr(config_class(), name)
    return type(value) if dataclasses.is_dataclass(value) else None
