"""AutoencoderKL: shapes, posterior, latent scaling, config round trips, input errors and tiled encode/decode."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from unstatic.networks.tiling import tile_spans, tiled_map
from unstatic.networks.vae import AutoencoderKL, DiagonalGaussian, VAEConfig


def tiny_config(block_out_channels=(8, 16), **overrides) -> VAEConfig:
    n = len(block_out_channels)
    fields = dict(
        block_out_channels=block_out_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        norm_num_groups=4,
        layers_per_block=1,
    )
    return VAEConfig(**{**fields, **overrides})


def tiny_vae(seed=0, **overrides) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(tiny_config(**overrides)).eval()


def smooth_image(channels: int, size: int, period: float, seed: int = 1) -> torch.Tensor:
    """[1, channels, size, size]: per channel, the mean of three plane waves of wavelength ``period`` and
    ``period / sqrt(2)`` (diagonal) with random phases; values in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    g = torch.Generator().manual_seed(seed)
    waves = []
    for _ in range(channels):
        phase = torch.rand(3, generator=g) * 2 * math.pi
        directions = ((1, 0), (0, 1), (1, 1))
        waves.append(sum(torch.sin(2 * math.pi * (fx * xx + fy * yy) / period + p) for (fx, fy), p in zip(directions, phase)) / 3)
    return torch.stack(waves)[None]


# -- shapes and the posterior --------------------------------------------------------------------------------


@pytest.mark.parametrize("block_out_channels, factor", [((8,), 1), ((8, 16), 2), ((8, 8, 16, 16), 8)])
def test_shapes_for_sd_like_layouts(single_thread, block_out_channels, factor):
    vae = tiny_vae(block_out_channels=block_out_channels, latent_channels=4)
    assert vae.config.downsampling_factor == factor
    x = torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        posterior = vae.encode(x)
        assert posterior.mean.shape == posterior.logvar.shape == posterior.std.shape == (2, 4, 16 // factor, 24 // factor)
        assert vae.decode(posterior.sample()).shape == x.shape
        assert vae(x).shape == x.shape


def test_sd_default_layout_parameter_names():
    vae = AutoencoderKL(VAEConfig(block_out_channels=(32, 32, 64, 64), norm_num_groups=8))
    names = set(vae.state_dict())
    for name in (
        "encoder.conv_in.weight",
        "encoder.down_blocks.0.resnets.1.conv2.weight",
        "encoder.down_blocks.2.resnets.0.conv_shortcut.weight",
        "encoder.down_blocks.2.downsamplers.0.conv.weight",
        "encoder.mid_block.resnets.1.norm1.weight",
        "encoder.mid_block.attentions.0.group_norm.weight",
        "encoder.mid_block.attentions.0.to_q.bias",
        "encoder.mid_block.attentions.0.to_out.0.weight",
        "encoder.conv_norm_out.weight",
        "quant_conv.weight",
        "post_quant_conv.weight",
        "decoder.mid_block.attentions.0.to_k.weight",
        "decoder.up_blocks.3.resnets.2.conv1.weight",
        "decoder.up_blocks.2.upsamplers.0.conv.weight",
        "decoder.conv_out.bias",
    ):
        assert name in names, name
    assert not any("down_blocks.3.downsamplers" in n or "up_blocks.3.upsamplers" in n for n in names)
    assert vae.encoder.conv_out.out_channels == 8  # mean and log-variance
    assert len(vae.decoder.up_blocks[0].resnets) == 3  # layers_per_block + 1


def test_optional_quant_convs_and_mid_attention():
    vae = tiny_vae(use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False)
    names = set(vae.state_dict())
    assert not any(n.startswith(("quant_conv", "post_quant_conv")) or "attentions" in n for n in names)
    with torch.no_grad():
        assert vae(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_deterministic(single_thread):
    vae = tiny_vae()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(vae.encode(x).mean, vae.encode(x).mean)
        a = vae.encode_latents(x, generator=torch.Generator().manual_seed(3), sample=True)
        b = vae.encode_latents(x, generator=torch.Generator().manual_seed(3), sample=True)
        assert torch.equal(a, b)
        assert torch.equal(vae.decode_latents(a), vae.decode_latents(b))
        assert not torch.equal(a, vae.encode_latents(x, generator=torch.Generator().manual_seed(4), sample=True))


def test_diagonal_gaussian():
    mean, logvar = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    q = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    assert torch.equal(q.mode(), mean)
    torch.testing.assert_close(q.std, (0.5 * logvar).exp())
    kl = q.kl()
    assert kl.shape == (3,) and (kl >= 0).all()
    # closed form against torch.distributions
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, q.std), torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    ).sum(dim=(1, 2, 3))
    torch.testing.assert_close(kl, reference)
    torch.testing.assert_close(q.kl(q), torch.zeros(3), atol=1e-5, rtol=0)
    assert (q.kl(DiagonalGaussian(torch.randn(3, 4, 4, 4))) >= 0).all()
    assert DiagonalGaussian(torch.zeros(1, 2, 1, 1)).kl().item() == 0.0
    # log-variance clamped to [-30, 20] as in diffusers
    extreme = DiagonalGaussian(torch.tensor([0.0, 0.0, 100.0, -100.0]).view(1, 4, 1, 1))
    assert extreme.logvar.flatten().tolist() == [20.0, -30.0]
    # sampling: mean + std * eps with eps from the generator
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(q.sample(g), mean + q.std * eps)


def test_kl_of_encoder_posterior_nonnegative():
    vae = tiny_vae()
    with torch.no_grad():
        assert (vae.encode(torch.randn(2, 3, 8, 8)).kl() >= 0).all()


# -- latent scaling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scaling_factor, shift_factor", [(0.18215, None), (0.3611, 0.1159), (1.5, -0.25)])
def test_latent_scaling_and_shift_applied_and_inverted(single_thread, scaling_factor, shift_factor):
    vae = tiny_vae(scaling_factor=scaling_factor, shift_factor=shift_factor)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        z = vae.encode(x).mean
        latents = vae.encode_latents(x)
        torch.testing.assert_close(latents, (z - (shift_factor or 0.0)) * scaling_factor)
        torch.testing.assert_close(vae.decode_latents(latents), vae.decode(z), atol=1e-6, rtol=1e-5)
        g = torch.Generator().manual_seed(1)
        sampled = vae.encode(x).sample(torch.Generator().manual_seed(1))
        torch.testing.assert_close(vae.encode_latents(x, generator=g, sample=True), (sampled - (shift_factor or 0.0)) * scaling_factor)


def test_sd_scaling_default():
    assert VAEConfig().scaling_factor == 0.18215 and VAEConfig().shift_factor is None


# -- configs -----------------------------------------------------------------------------------------------


def test_config_json_round_trip():
    config = tiny_config(scaling_factor=0.13025, shift_factor=0.0609, sample_size=(64, 96), use_post_quant_conv=False)
    text = config.to_json()
    data = json.loads(text)
    assert data["type"] == "autoencoder_kl" and data["version"] == 1
    assert VAEConfig.from_json(text) == config
    assert VAEConfig.from_json(VAEConfig().to_json()) == VAEConfig()
    with pytest.raises(ValueError, match="unknown VAEConfig field.*bogus"):
        VAEConfig.from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="type"):
        VAEConfig.from_dict({**config.to_dict(), "type": "unet"})
    with pytest.raises(ValueError, match="version"):
        VAEConfig.from_dict({**config.to_dict(), "version": 99})


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        VAEConfig().latent_channels = 8


def test_from_diffusers_config_defaults_and_unsupported_options():
    sd = {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.20.0",
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": 512,
    }
    assert VAEConfig.from_diffusers(sd) == VAEConfig()
    minimal = VAEConfig.from_diffusers({})  # diffusers' own defaults: one 64-channel block, one layer
    assert minimal.block_out_channels == (64,) and minimal.layers_per_block == 1 and minimal.sample_size == 32
    assert VAEConfig.from_diffusers({**sd, "force_upcast": False}).force_upcast is False
    for option, value, field in (
        ("act_fn", "gelu", "act_fn"),
        ("down_block_types", ["AttnDownEncoderBlock2D"] + ["DownEncoderBlock2D"] * 3, "down_block_types"),
        ("up_block_types", ["UpDecoderBlock2D"] * 3, "up_block_types"),
        ("latents_mean", [0.0] * 4, "latents_mean"),
        ("use_tiling_magic", True, "use_tiling_magic"),
    ):
        with pytest.raises(ValueError, match=field):
            VAEConfig.from_diffusers({**sd, option: value})
    with pytest.raises(ValueError, match="_class_name"):
        VAEConfig.from_diffusers({**sd, "_class_name": "AutoencoderTiny"})
    with pytest.raises(ValueError, match="norm_num_groups"):
        VAEConfig(block_out_channels=(24, 32, 32, 32))


# -- input errors ---------------------------------------------------------------------------------------------


def test_bad_inputs_name_the_problem():
    vae = tiny_vae(block_out_channels=(8, 8, 16))
    with pytest.raises(ValueError, match="1 channels; this VAE expects 3"):
        vae.encode(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"10x8 is not divisible by 4"):
        vae.encode(torch.randn(1, 3, 10, 8))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        vae.encode(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="latents has 3 channels; this VAE expects 4"):
        vae.decode(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="latents has 8 channels"):
        vae.decode_latents(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="not divisible by 4"):
        vae.encode_latents(torch.randn(1, 3, 8, 6))


# -- diffusers folders (our loader, without needing diffusers) -----------------------------------------------------


def test_from_diffusers_folder_strict_keys(tmp_path):
    from safetensors.torch import save_file

    vae = tiny_vae()
    diffusers_config = {k: v for k, v in vae.config.to_dict().items() if k not in ("type", "version")}
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **diffusers_config}))
    state = {k: v.contiguous() for k, v in vae.state_dict().items()}
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    loaded = AutoencoderKL.from_diffusers_folder(tmp_path)
    assert loaded.config == vae.config
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k]), k

    broken = dict(state)
    del broken["encoder.conv_in.bias"]
    broken["encoder.extra.weight"] = torch.zeros(1)
    broken["decoder.conv_out.bias"] = torch.zeros(5)
    save_file(broken, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError) as error:
        AutoencoderKL.from_diffusers_folder(tmp_path)
    message = str(error.value)
    assert "1 missing keys: encoder.conv_in.bias" in message
    assert "1 unexpected keys: encoder.extra.weight" in message
    assert "decoder.conv_out.bias: (5,) in" in message and "(3,) in the model" in message
    with pytest.raises(FileNotFoundError, match="fp16"):
        AutoencoderKL.from_diffusers_folder(tmp_path, variant="fp16")


def test_legacy_attention_names_are_renamed(tmp_path):
    from safetensors.torch import save_file

    vae = tiny_vae()
    state = {}
    legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    for k, v in vae.state_dict().items():
        for new, old in legacy.items():
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        state[k] = v.contiguous()
    config = {k: v for k, v in vae.config.to_dict().items() if k not in ("type", "version")}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    loaded = AutoencoderKL.from_diffusers_folder(tmp_path)
    assert torch.equal(loaded.encoder.mid_block.attentions[0].to_out[0].weight, vae.encoder.mid_block.attentions[0].to_out[0].weight)


# -- tiling: the generic blender ------------------------------------------------------------------------------


def test_tile_spans_cover_with_required_overlap():
    assert tile_spans(20, 32, 8) == [(0, 20)]
    for length, tile, overlap, align in ((96, 64, 32, 8), (100, 32, 8, 4), (1000, 128, 32, 8), (33, 16, 4, 1)):
        spans = tile_spans(length, tile, overlap, align)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(e - s == tile and s % align == 0 for s, e in spans)
        assert all(a[1] - b[0] >= overlap for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("tile, overlap", [(8, 4), (12, 4), ((8, 16), (2, 6)), (8, 0)])
def test_tiled_map_is_exact_for_local_maps(tile, overlap):
    """Maps with no context (pointwise, or acting within aligned cells) tile exactly: the blend weights form
    a partition of unity, so only rounding remains."""
    x = torch.randn(2, 3, 24, 32, dtype=torch.float64)
    weight = torch.randn(5, 3, 1, 1, dtype=torch.float64)
    down = lambda t: F.conv2d(F.avg_pool2d(t, 2), weight)  # noqa: E731
    up = lambda t: F.interpolate(F.conv2d(t, weight), scale_factor=4, mode="nearest")  # noqa: E731
    torch.testing.assert_close(tiled_map(down, x, 0.5, tile, overlap), down(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tiled_map(up, x, 4, tile, overlap), up(x), rtol=1e-12, atol=1e-12)


def test_tiled_map_errors():
    x = torch.randn(1, 1, 16, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        tiled_map(lambda t: t[..., ::4, ::4], x, 0.25, 6, 2)
    with pytest.raises(ValueError, match="tile_overlap < tile_size"):
        tiled_map(lambda t: t, x, 1, 8, 8)
    with pytest.raises(ValueError, match="expected spatial size"):
        tiled_map(lambda t: t, x, 2, 8, 2)
    with pytest.raises(ValueError, match="not a multiple of 8"):
        tiled_map(lambda t: t, torch.randn(1, 1, 12, 16), 0.125, 8, 0)


# -- tiling: the VAE ----------------------------------------------------------------------------------------------
#
# Tiling cannot reproduce the untiled result: each tile normalises with its own GroupNorm statistics, is
# zero-padded at its edges, and its mid-block attention sees only the tile. How far that moves the output
# is a property of the network, not of the blender: the blend is a per-pixel convex combination of tile
# outputs, so at every pixel its error is at most that of the worst tile covering the pixel (checked below).
# For this random-weight VAE (8, 16 channels; 2x2 tiles overlapping by half a tile on a 96-pixel image or
# 48-cell latent) the relative RMS difference measured 0.033-0.046 (encode) and 0.076-0.146 (decode), the
# relative max difference 0.07-0.19, over weight seeds 0-3. The tolerances (0.2 RMS, 0.3 max) sit above that
# range; a misplaced tile, a wrong scale or unnormalised weights give O(1) differences (abutting tiles alone
# give 0.21-0.66 RMS). Trained VAEs with 512-pixel tiles differ far less, since most of each tile then lies
# farther from its edges than the receptive field of the convolutions.
#
# Seams are measured on the difference field d = tiled - untiled: a seam is a jump of d across a tile edge.
# The statistic is the mean squared step of d across each inner tile edge, divided by the median squared step
# over all positions of the same phase in the latent grid (nearest-neighbour upsampling makes even and odd
# pixel steps differ). Over seeds 0-3 it measured 0.87-3.2 with overlapping tiles and 12.6-52 with abutting
# tiles (no overlap). The bound is 4.

RMS_TOLERANCE, MAX_TOLERANCE, SEAM_FACTOR = 0.2, 0.3, 4.0


def relative_errors(tiled, full):
    return ((tiled - full).square().mean().sqrt() / full.square().mean().sqrt()).item(), ((tiled - full).abs().max() / full.abs().max()).item()


def seam_ratio(image, spans, phase_period=1):
    """Largest (over both axes and all inner tile edges) squared step across a tile edge, over the median squared
    step at positions of the same phase."""
    worst = 0.0
    for axis in (-1, -2):
        steps = image.diff(dim=axis).square().mean(dim=tuple(d for d in range(4) if d != 4 + axis))
        edges = {e for _, e in spans[:-1]} | {s for s, _ in spans[1:]}
        for e in edges:
            worst = max(worst, steps[e - 1].item() / steps[(e - 1) % phase_period :: phase_period].median().item())
    return worst


@pytest.fixture(scope="module")
def vae96():
    return tiny_vae(scaling_factor=1.0)


def test_tiled_encode_close_to_untiled_without_seams(single_thread, vae96):
    x = smooth_image(3, 96, period=32)
    with torch.no_grad():
        full = vae96.encode_latents(x)
        tiled = vae96.encode_latents(x, tile_size=64, tile_overlap=32)
        abutting = vae96.encode_latents(x, tile_size=48, tile_overlap=0)
    rms, worst = relative_errors(tiled, full)
    assert rms < RMS_TOLERANCE and worst < MAX_TOLERANCE, (rms, worst)
    spans = [(s // 2, e // 2) for s, e in tile_spans(96, 64, 32, 2)]
    assert len(spans) == 2
    assert seam_ratio(tiled - full, spans) < SEAM_FACTOR
    # the statistic does see a seam where tiles abut
    assert seam_ratio(abutting - full, [(0, 24), (24, 48)]) > SEAM_FACTOR
    # a tile covering the whole image is the untiled encoder
    with torch.no_grad():
        assert torch.equal(vae96.encode_latents(x, tile_size=96), full)


def test_tiled_decode_close_to_untiled_without_seams(single_thread, vae96):
    z = smooth_image(4, 48, period=16, seed=2)
    with torch.no_grad():
        full = vae96.decode_latents(z)
        tiled = vae96.decode_latents(z, tile_size=32, tile_overlap=16)
        default_overlap = vae96.decode_latents(z, tile_size=32)  # a quarter tile, widened to fit two tiles
        abutting = vae96.decode_latents(z, tile_size=24, tile_overlap=0)
    assert torch.equal(default_overlap, tiled)
    rms, worst = relative_errors(tiled, full)
    assert rms < RMS_TOLERANCE and worst < MAX_TOLERANCE, (rms, worst)
    spans = [(s * 2, e * 2) for s, e in tile_spans(48, 32, 16)]
    assert seam_ratio(tiled - full, spans, phase_period=2) < SEAM_FACTOR
    assert seam_ratio(abutting - full, [(0, 48), (48, 96)], phase_period=2) > SEAM_FACTOR


def test_tiled_error_bounded_by_worst_tile(single_thread, vae96):
    """Per pixel, |tiled - untiled| <= max over the tiles covering it of |tile output - untiled|."""
    z = smooth_image(4, 48, period=16, seed=2)
    with torch.no_grad():
        full = vae96.decode_latents(z)
        tiled = vae96.decode_latents(z, tile_size=32, tile_overlap=16)
        bound = torch.zeros_like(full)
        spans = tile_spans(48, 32, 16)
        for top, bottom in spans:
            for left, right in spans:
                region = (slice(None), slice(None), slice(2 * top, 2 * bottom), slice(2 * left, 2 * right))
                tile_error = (vae96.decode_latents(z[:, :, top:bottom, left:right]) - full[region]).abs()
                bound[region] = torch.maximum(bound[region], tile_error)
    assert ((tiled - full).abs() <= bound + 1e-5).all()
