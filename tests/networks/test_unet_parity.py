"""Our U-Net loads diffusers' UNet2DModel / UNet2DConditionModel checkpoints by name and computes the same
function: random-weight diffusers models are saved with ``save_pretrained``, read with ``load_diffusers_unet``
and compared on the same inputs in float32 (relative error = max |ours - theirs| / max |theirs|)."""

import pytest
import torch

from tests.networks.helpers import perturb_parameters, relative_error
from unstatic.networks.unet import UNet, UNetConfig
from unstatic.networks.weights import load_diffusers_unet

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("single_thread")

TOLERANCE = 1e-5

# The DDPM CIFAR-10 layout (google/ddpm-cifar10-32) with fewer channels.
DDPM_CIFAR10 = dict(
    sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64, 64), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=8, downsample_padding=0,
)
# Guided-diffusion style: scale-shift conditioning, several heads, class labels (the mid attention has no norm).
CLASS_CONDITIONAL = dict(
    sample_size=16, in_channels=3, out_channels=6, block_out_channels=(16, 32, 32), layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=8, norm_num_groups=8, resnet_time_scale_shift="scale_shift", num_class_embeds=10,
    mid_block_scale_factor=2 ** 0.5, center_input_sample=True,
)
# Stable Diffusion 1.x with fewer channels and a narrow context.
SD1 = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64, 64), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=8, cross_attention_dim=24, norm_num_groups=8,
)
# Stable Diffusion 2.x: linear projections, a number of heads per block, upcast attention.
SD2 = dict(
    SD1, attention_head_dim=(2, 4, 8, 8), use_linear_projection=True, upcast_attention=True,
    transformer_layers_per_block=(1, 2, 1, 1),
)
# Mixed: plain-attention blocks next to transformers, only-cross-attention, a resnet-only middle and class
# embeddings through the timestep MLP; attention_head_dim means heads here and head width there.
MIXED_CONDITIONAL = dict(
    sample_size=8, in_channels=5, out_channels=3, block_out_channels=(16, 32), layers_per_block=(1, 2),
    down_block_types=("AttnDownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "AttnUpBlock2D"),
    mid_block_type="UNetMidBlock2D", attention_head_dim=4, cross_attention_dim=12, norm_num_groups=4,
    only_cross_attention=(False, True), class_embed_type="timestep", flip_sin_to_cos=False, freq_shift=1,
    conv_in_kernel=5, conv_out_kernel=1, time_embedding_dim=48,
)

# SDXL (Podell et al. 2023): pooled text + size/crop "text_time" conditioning, per-level transformer depths.
SDXL = dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(1, 2), cross_attention_dim=24, norm_num_groups=8, transformer_layers_per_block=(1, 2),
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=16 + 6 * 8,
)
# The real SDXL base U-Net's config.json (stabilityai/stable-diffusion-xl-base-1.0, unet/), as published.
SDXL_CONFIG = {
    "_class_name": "UNet2DConditionModel", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "in_channels": 4, "layers_per_block": 2, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_num_groups": 32,
    "out_channels": 4, "projection_class_embeddings_input_dim": 2816, "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10], "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False, "use_linear_projection": True,
}


def _roundtrip(reference, tmp_path) -> UNet:
    reference.save_pretrained(tmp_path, safe_serialization=True)
    return load_diffusers_unet(tmp_path)


@pytest.mark.parametrize("name", ["ddpm_cifar10", "class_conditional"])
def test_unet_2d_model_matches(name, tmp_path):
    torch.manual_seed(0)
    kwargs = {"ddpm_cifar10": DDPM_CIFAR10, "class_conditional": CLASS_CONDITIONAL}[name]
    reference = perturb_parameters(diffusers.UNet2DModel(**kwargs))
    ours = _roundtrip(reference, tmp_path)
    x, t = torch.randn(2, kwargs["in_channels"], 16, 16), torch.tensor([3.0, 871.5])
    labels = torch.tensor([1, 7]) if "num_class_embeds" in kwargs else None
    with torch.no_grad():
        expected = reference(x, t, class_labels=labels).sample
        got = ours(x, t, None if labels is None else {"class_labels": labels})
    assert relative_error(got, expected) <= TOLERANCE


@pytest.mark.parametrize("name", ["sd1", "sd2", "mixed"])
def test_unet_2d_condition_model_matches(name, tmp_path):
    torch.manual_seed(0)
    kwargs = {"sd1": SD1, "sd2": SD2, "mixed": MIXED_CONDITIONAL}[name]
    reference = perturb_parameters(diffusers.UNet2DConditionModel(**kwargs))
    ours = _roundtrip(reference, tmp_path)
    size = kwargs["sample_size"]
    x, t = torch.randn(2, kwargs["in_channels"], size, size), torch.tensor([999.0, 20.25])
    context = torch.randn(2, 7, kwargs["cross_attention_dim"])
    labels = torch.tensor([5.0, 300.0]) if kwargs.get("class_embed_type") else None
    with torch.no_grad():
        expected = reference(x, t, context, class_labels=labels).sample
        got = ours(x, t, {"context": context, "class_labels": labels} if labels is not None else context)
    assert relative_error(got, expected) <= TOLERANCE


def test_sdxl_text_time_conditioning_matches(tmp_path):
    """SDXL's added conditioning: diffusers' ``added_cond_kwargs`` are our ``cond['added']``, under the same names."""
    torch.manual_seed(0)
    reference = perturb_parameters(diffusers.UNet2DConditionModel(**SDXL))
    ours = _roundtrip(reference, tmp_path)
    assert ours.config.addition_embed_type == "text_time" and ours.config.addition_time_embed_dim == 8
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([999.0, 20.25]), torch.randn(2, 7, 24)
    added = {"text_embeds": torch.randn(2, 16), "time_ids": torch.tensor([[64.0, 48, 0, 0, 64, 48], [32, 32, 8, 4, 16, 16]])}
    with torch.no_grad():
        expected = reference(x, t, context, added_cond_kwargs=added).sample
        got = ours(x, t, {"context": context, "added": added})
        other_size = ours(x, t, {"context": context, "added": {**added, "time_ids": added["time_ids"].flip(0)}})
    assert relative_error(got, expected) <= TOLERANCE
    assert relative_error(other_size, expected) > 1e-3  # the size numbers do reach the network


@pytest.mark.parametrize("name", ["sd15", "sd21", "sdxl", "ddpm_cifar10"])
def test_full_size_layouts_have_diffusers_keys_and_shapes(name):
    """The real checkpoints' layouts, built on the meta device (no memory, no time): same names, same shapes."""
    from tests.networks.test_unet import DDPM_CIFAR10_CONFIG, SD15_CONFIG, SD21_CONFIG

    raw = {"sd15": SD15_CONFIG, "sd21": SD21_CONFIG, "sdxl": SDXL_CONFIG, "ddpm_cifar10": DDPM_CIFAR10_CONFIG}[name]
    reference_class = getattr(diffusers, raw["_class_name"])
    with torch.device("meta"):
        reference = reference_class(**{k: v for k, v in raw.items() if not k.startswith("_")})
        ours = UNet(UNetConfig.from_diffusers(raw))
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == shapes
