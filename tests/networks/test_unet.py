"""The U-Net: shapes, determinism, saving and loading, zero-initialised output, gradient checkpointing, input
checks, diffusers config mapping, and use through Preconditioned and a sampler."""

import json

import pytest
import torch
from safetensors.torch import save_file

from unstatic.core import DiscreteSchedule, get_sigmas
from unstatic.denoisers import Preconditioned
from unstatic.networks.unet import UNet, UNetConfig
from unstatic.networks.weights import load_diffusers_unet, load_model, save_model
from unstatic.sampling import sample

pytestmark = pytest.mark.usefixtures("single_thread")

# Tiny versions of the layouts the U-Net must express.
PIXEL = UNetConfig(  # DDPM: plain self-attention at one level, no context
    in_channels=3, out_channels=3, block_out_channels=(8, 16, 16), layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2D", num_attention_heads=None, cross_attention_dim=None, norm_num_groups=4,
    flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
)
LATENT = UNetConfig(  # Stable Diffusion: transformers with cross-attention
    block_out_channels=(8, 16), layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), num_attention_heads=2, cross_attention_dim=12, norm_num_groups=4,
)
CLASS_CONDITIONAL = UNetConfig(  # scale-shift conditioning, class labels, an extra embedding, extra input channels
    in_channels=5, out_channels=2, block_out_channels=(8, 16), layers_per_block=(1, 2),
    down_block_types=("AttnDownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "AttnUpBlock2D"),
    attention_head_dim=4, num_attention_heads=2, cross_attention_dim=6, transformer_layers_per_block=(1, 2),
    use_linear_projection=True, only_cross_attention=(True, False), norm_num_groups=4, resnet_time_scale_shift="scale_shift",
    class_embed_type="embedding", num_class_embeds=3, addition_embed_dim=5, dropout=0.1, conv_out_kernel=1,
)
CONFIGS = {"pixel": PIXEL, "latent": LATENT, "class_conditional": CLASS_CONDITIONAL}


def _cond(config: UNetConfig, batch: int, gen: torch.Generator):
    cond = {}
    if config.has_cross_attention:
        cond["context"] = torch.randn(batch, 3, config.cross_attention_dim, generator=gen)
    if config.class_embed_type:
        cond["class_labels"] = torch.arange(batch) % config.num_class_embeds
    if config.addition_embed_dim:
        cond["added"] = torch.randn(batch, config.addition_embed_dim, generator=gen)
    return cond or None


def _model(config: UNetConfig, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(config).eval()


def _inputs(config: UNetConfig, batch: int = 2, size: int = 8):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, config.in_channels, size, size, generator=gen)
    return x, torch.linspace(0, 999, batch), _cond(config, batch, gen)


@pytest.mark.parametrize("name", CONFIGS)
def test_output_shape(name):
    config = CONFIGS[name]
    x, t, cond = _inputs(config, batch=3, size=8)
    with torch.no_grad():
        out = _model(config)(x, t, cond)
    assert out.shape == (3, config.out_channels, 8, 8)
    assert torch.isfinite(out).all()


def test_rectangular_input_and_scalar_timestep():
    x, _, cond = _inputs(LATENT)
    x = torch.randn(2, 4, 4, 10)
    with torch.no_grad():
        model = _model(LATENT)
        torch.testing.assert_close(model(x, 500, cond), model(x, torch.tensor([500.0, 500.0]), cond), rtol=0, atol=0)


@pytest.mark.parametrize("name", CONFIGS)
def test_deterministic(name):
    config = CONFIGS[name]
    x, t, cond = _inputs(config)
    with torch.no_grad():
        first = _model(config, seed=3)(x, t, cond)
        assert torch.equal(first, _model(config, seed=3)(x, t, cond))
        assert not torch.equal(first, _model(config, seed=4)(x, t, cond))


@pytest.mark.parametrize("name", CONFIGS)
def test_save_load_round_trip_is_exact(name, tmp_path):
    config = CONFIGS[name]
    model = _model(config)
    save_model(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["type"] == "unet" and saved["version"] == 1
    loaded = load_model(tmp_path)
    assert isinstance(loaded, UNet) and loaded.config == config
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in loaded.parameters())
    x, t, cond = _inputs(config)
    with torch.no_grad():
        assert torch.equal(model(x, t, cond), loaded(x, t, cond))


def test_load_model_casts_dtype(tmp_path):
    save_model(_model(LATENT), tmp_path)
    assert {p.dtype for p in load_model(tmp_path, dtype=torch.bfloat16).parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("storage", [torch.float16, torch.bfloat16])
def test_half_precision_storage_halves_the_file_and_loads_as_float32(storage, tmp_path):
    model = _model(LATENT)
    save_model(model, tmp_path / "full")
    save_model(model, tmp_path / "half", storage_dtype=storage)
    full, half = (tmp_path / name / "model.safetensors" for name in ("full", "half"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_model(tmp_path / "half")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    rounded = {k: v.to(storage).float() for k, v in model.state_dict().items()}
    assert all(torch.equal(rounded[k], v) for k, v in loaded.state_dict().items())
    assert {p.dtype for p in load_model(tmp_path / "half", dtype=storage).parameters()} == {storage}
    with pytest.raises(ValueError, match="storage_dtype"):
        save_model(model, tmp_path / "bad", storage_dtype=torch.int8)


def test_load_model_names_missing_and_unexpected_keys(tmp_path):
    model = _model(PIXEL)
    save_model(model, tmp_path)
    tensors = {k: v for k, v in model.state_dict().items() if k != "conv_out.bias"}
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing keys: conv_out\.bias.*unexpected keys: extra\.weight"):
        load_model(tmp_path)


def test_zero_initialised_output_is_zero():
    config = UNetConfig(**{**LATENT.__dict__, "zero_init_out": True})
    x, t, cond = _inputs(config)
    with torch.no_grad():
        assert torch.equal(_model(config)(x, t, cond), torch.zeros(2, config.out_channels, 8, 8))


@pytest.mark.parametrize("name", ["pixel", "class_conditional"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    config = UNetConfig(**{**CONFIGS[name].__dict__, "dropout": 0.1})  # the recomputation replays dropout's RNG
    x, t, cond = _inputs(config)
    grads, calls = [], []
    for enabled in (False, True):
        model = _model(config).train()
        torch.manual_seed(5)
        model.gradient_checkpointing = enabled
        count = [0]
        model.down_blocks[0].resnets[0].register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
        model(x, t, cond).square().mean().backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
        calls.append(count[0])
    assert calls == [1, 2]  # checkpointing recomputes the block in the backward pass
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, rtol=1e-5, atol=1e-7, msg=k)


# -- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("latent", lambda x, c: (x[:, :3], c), "3 channels but the U-Net's in_channels is 4"),
        ("latent", lambda x, c: (x[..., :5], c), "spatial size 8x5 must be divisible by 2"),
        ("pixel", lambda x, c: (x[..., :6, :6], c), r"divisible by 4 \(2\^2 downsamplings\)"),
        ("latent", lambda x, c: (x[0], c), r"\[B, C, H, W\]"),
        ("latent", lambda x, c: (x, None), "cross-attends to a context"),
        ("latent", lambda x, c: (x, torch.randn(2, 3, 11)), "cross_attention_dim=12"),
        ("latent", lambda x, c: (x, torch.randn(1, 3, 12)), "context has batch 1"),
        ("latent", lambda x, c: (x, {"text": c["context"]}), r"unknown condition keys \['text'\]"),
        ("pixel", lambda x, c: (x, torch.randn(2, 3, 12)), "no cross-attention"),
        ("pixel", lambda x, c: (x, {"class_labels": torch.tensor([0, 1])}), "no class embedding"),
        ("class_conditional", lambda x, c: (x, {**c, "class_labels": None}), "class-conditional"),
        ("class_conditional", lambda x, c: (x, {**c, "class_labels": torch.tensor([0, 3])}), "num_class_embeds=3"),
        ("class_conditional", lambda x, c: (x, {**c, "class_labels": torch.tensor([0.0, 1.0])}), "integer labels"),
        ("class_conditional", lambda x, c: (x, {**c, "added": torch.randn(2, 4)}), "addition_embed_dim"),
        ("latent", lambda x, c: (x, {**c, "added": torch.randn(2, 4)}), "no add_embedding"),
    ],
)
def test_bad_input_names_the_problem(name, change, message):
    config = CONFIGS[name]
    x, t, cond = _inputs(config)
    x, cond = change(x, cond)
    with pytest.raises(ValueError, match=message):
        _model(config)(x, t, cond)


def test_wrong_timestep_count():
    x, _, cond = _inputs(LATENT)
    with pytest.raises(ValueError, match="timestep must be a scalar or have one entry per sample"):
        _model(LATENT)(x, torch.tensor([1.0, 2.0, 3.0]), cond)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"down_block_types": ("DownBlock2D",)}, "down_block_types"),
        ({"up_block_types": ("UpBlock2D", "SimpleCrossAttnUpBlock2D")}, "up_block_types"),
        ({"layers_per_block": (1, 1, 1)}, "layers_per_block"),
        ({"norm_num_groups": 3}, "norm_num_groups"),
        ({"num_attention_heads": 32}, "num_attention_heads"),
        ({"resnet_time_scale_shift": "spatial"}, "resnet_time_scale_shift"),
        ({"class_embed_type": "embedding"}, "num_class_embeds"),
        ({"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}, "mid_block_type"),
    ],
)
def test_bad_config_names_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        UNetConfig(**{**LATENT.__dict__, **change})


# -- diffusers configs (no diffusers needed: the models are built on the meta device) -----------------------

SD15_CONFIG = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD21_CONFIG = {
    **SD15_CONFIG, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "dual_cross_attention": False,
    "num_class_embeds": None, "only_cross_attention": False, "sample_size": 96, "use_linear_projection": True,
    "upcast_attention": True,
}
DDPM_CIFAR10_CONFIG = {
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None, "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False, "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 32,
    "time_embedding_type": "positional", "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}


@pytest.mark.parametrize(
    "raw, parameters",
    [(SD15_CONFIG, 859_520_964), (SD21_CONFIG, 865_910_724), (DDPM_CIFAR10_CONFIG, 35_746_307)],
    ids=["sd15", "sd21", "ddpm_cifar10"],
)
def test_full_size_diffusers_configs_build(raw, parameters):
    with torch.device("meta"):
        model = UNet(UNetConfig.from_diffusers(raw))
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_diffusers_head_count_meaning_is_translated():
    sd21 = UNetConfig.from_diffusers(SD21_CONFIG)
    assert sd21.num_attention_heads == (5, 10, 20, 20) and sd21.attention_head_dim is None
    assert [sd21.attention_shape(level, "transformer") for level in range(3)] == [(5, 64), (10, 64), (20, 64)]
    ddpm = UNetConfig.from_diffusers(DDPM_CIFAR10_CONFIG)
    assert ddpm.attention_shape(1, "self") == (1, 256) and not ddpm.has_cross_attention


@pytest.mark.parametrize(
    "change, field",
    [
        ({"addition_embed_type": "text_image"}, "addition_embed_type"),
        ({"addition_embed_type": "text_time", "addition_time_embed_dim": 256}, "projection_class_embeddings_input_dim"),
        ({"encoder_hid_dim": 1024}, "encoder_hid_dim"),
        ({"attention_type": "gated"}, "attention_type"),
        ({"dual_cross_attention": True}, "dual_cross_attention"),
        ({"num_attention_heads": 8}, "num_attention_heads"),
        ({"time_embedding_type": "fourier"}, "time_embedding_type"),
        ({"act_fn": "gelu"}, "act_fn"),
        ({"time_cond_proj_dim": 256}, "time_cond_proj_dim"),
        ({"class_embeddings_concat": True}, "class_embeddings_concat"),
        ({"class_embed_type": "learned"}, "class_embed_type"),
        ({"cross_attention_dim": [768, 768, 1024, 1024]}, "cross_attention_dim"),
        ({"transformer_layers_per_block": [[1, 2], [1, 2], [1, 2], [1, 2]]}, "transformer_layers_per_block"),
        ({"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}, "mid_block_type"),
        ({"down_block_types": ["SimpleCrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]}, "down_block_types"),
        ({"_class_name": "UNet3DConditionModel"}, "_class_name"),
    ],
)
def test_unsupported_diffusers_options_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        UNetConfig.from_diffusers({**SD15_CONFIG, **change})


def test_unknown_diffusers_fields_are_named_in_a_warning():
    with pytest.warns(UserWarning, match="brand_new_option"):
        UNetConfig.from_diffusers({**SD15_CONFIG, "brand_new_option": 1})


def test_bfloat16_model_takes_float32_context(tmp_path):
    save_model(_model(LATENT), tmp_path)
    model = load_model(tmp_path, dtype=torch.bfloat16)
    x, t, cond = _inputs(LATENT)
    with torch.no_grad():
        assert model(x.bfloat16(), t, cond).dtype == torch.bfloat16


def test_load_diffusers_folder_checks_every_key(tmp_path):
    raw = {**DDPM_CIFAR10_CONFIG, "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 4}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    model = _model(UNetConfig.from_diffusers(raw))
    save_file(dict(model.state_dict()), tmp_path / "diffusion_pytorch_model.safetensors")
    loaded = load_diffusers_unet(tmp_path)
    x, t, _ = _inputs(loaded.config)
    with torch.no_grad():
        assert torch.equal(loaded(x, t), model(x, t))

    tensors = {k: v for k, v in model.state_dict().items() if not k.startswith("mid_block.attentions.0.to_q")}
    tensors["mid_block.attentions.0.query.weight"] = model.state_dict()["mid_block.attentions.0.to_q.weight"]
    save_file(tensors, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match=r"2 missing keys: mid_block\.attentions\.0\.to_q\.bias.*1 unexpected keys: mid_block\.attentions\.0\.query"):
        load_diffusers_unet(tmp_path)


# -- use as a denoiser --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["latent", "class_conditional"])
def test_preconditioned_unet_samples(name):
    config = UNetConfig(**{**CONFIGS[name].__dict__, "out_channels": CONFIGS[name].in_channels})  # eps has x's shape
    schedule = DiscreteSchedule.from_config()
    denoiser = Preconditioned(_model(config), schedule, prediction="eps")
    x, _, cond = _inputs(config, batch=2)
    sigmas = get_sigmas("karras", 2, schedule)
    with torch.no_grad():
        out = sample("euler", denoiser, x * sigmas[0], sigmas, cond=cond)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_class_labels_as_bare_condition():
    config = UNetConfig(**{**PIXEL.__dict__, "class_embed_type": "embedding", "num_class_embeds": 4})
    x, t, _ = _inputs(config)
    labels = torch.tensor([2, 3])
    model = _model(config)
    with torch.no_grad():
        assert torch.equal(model(x, t, labels), model(x, t, {"class_labels": labels}))


def test_cpu_efficient_default_has_no_full_resolution_attention_and_wide_heads():
    from unstatic.networks.unet_config import UNetConfig as Config

    config = Config.cpu_efficient(base_channels=32, cross_attention_dim=16, norm_num_groups=8)
    model = UNet(config).eval()
    assert not hasattr(model.down_blocks[0], "attentions") or not model.down_blocks[0].attentions
    for level in (1, 2):
        heads, head_dim = config.attention_shape(level, "transformer")
        assert head_dim == 32 and heads * head_dim == config.block_out_channels[level]
    with torch.no_grad():
        out = model(torch.randn(2, 4, 16, 16), torch.tensor([10.0, 900.0]), torch.randn(2, 5, 16))
    assert out.shape == (2, 4, 16, 16) and torch.equal(out, torch.zeros_like(out)), "zero-initialised output"
