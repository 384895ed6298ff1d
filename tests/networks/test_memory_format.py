"""Channels-last activations: the networks run on NHWC maps internally (for speed), so the layers must give the
same numbers for either input layout, keep a channels-last map channels-last, and the networks must hand back
plain contiguous NCHW tensors."""

import copy

import pytest
import torch

from tests.networks.test_unet import CONFIGS, _inputs, _model
from tests.networks.test_vae import tiny_vae
from unstatic.networks.attention import Attention, Transformer2DModel

pytestmark = pytest.mark.usefixtures("single_thread")
CL = torch.channels_last


def _both_layouts(layer: torch.nn.Module, x: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return layer(x.contiguous(), *args), layer(x.contiguous(memory_format=CL), *args)


@pytest.mark.parametrize("linear", [False, True])
def test_transformer_gives_the_same_result_for_both_layouts_and_keeps_channels_last(linear):
    torch.manual_seed(0)
    layer = Transformer2DModel(2, 8, 16, norm_num_groups=4, cross_attention_dim=12, use_linear_projection=linear).eval()
    x, context = torch.randn(2, 16, 6, 5), torch.randn(2, 7, 12)
    nchw, nhwc = _both_layouts(layer, x, context)
    torch.testing.assert_close(nhwc, nchw, rtol=0, atol=1e-6)
    assert nhwc.is_contiguous(memory_format=CL)  # no hidden copy back to NCHW inside the block


def test_spatial_attention_gives_the_same_result_for_both_layouts_and_keeps_channels_last():
    torch.manual_seed(0)
    layer = Attention(16, heads=2, dim_head=8, bias=True, norm_num_groups=4, residual_connection=True, rescale_output_factor=2.0).eval()
    x = torch.randn(2, 16, 5, 7)
    nchw, nhwc = _both_layouts(layer, x)
    torch.testing.assert_close(nhwc, nchw, rtol=0, atol=1e-6)
    assert nhwc.is_contiguous(memory_format=CL)


def test_token_attention_with_group_norm_matches_the_spatial_form():
    """``[B, N, C]`` input takes the transposed GroupNorm branch; it must agree with the 4-D branch."""
    torch.manual_seed(0)
    layer = Attention(16, heads=2, dim_head=8, bias=True, norm_num_groups=4).eval()
    x = torch.randn(2, 16, 3, 4)
    with torch.no_grad():
        spatial = layer(x)
        tokens = layer(x.flatten(2).transpose(1, 2))
    torch.testing.assert_close(tokens, spatial.flatten(2).transpose(1, 2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CONFIGS)
def test_unet_returns_contiguous_nchw_for_either_input_layout(name):
    config = CONFIGS[name]
    model = _model(config)
    x, t, cond = _inputs(config)
    with torch.no_grad():
        nchw = model(x, t, cond)
        nhwc = model(x.contiguous(memory_format=CL), t, cond)
    assert nchw.is_contiguous() and nhwc.is_contiguous()
    torch.testing.assert_close(nhwc, nchw, rtol=0, atol=0)


def test_vae_returns_contiguous_nchw_for_either_input_layout():
    vae = tiny_vae()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        mean, mean_cl = (vae.encode(x.contiguous(memory_format=f)).mean for f in (torch.contiguous_format, CL))
        image, image_cl = (vae.decode(mean.contiguous(memory_format=f)) for f in (torch.contiguous_format, CL))
    for t in (mean, mean_cl, image, image_cl):
        assert t.is_contiguous()
    torch.testing.assert_close(mean_cl, mean, rtol=0, atol=0)
    torch.testing.assert_close(image_cl, image, rtol=0, atol=0)


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_conv_weights_are_channels_last_when_built_loaded_and_cast(tmp_path):
    """The weights must stay in the activations' layout, or every conv call copies its kernel."""
    from unstatic.networks.weights import load_model, save_model

    model = _model(CONFIGS["latent"])
    loaded = load_model(save_model(model, tmp_path / "unet"))
    vae = load_model(save_model(tiny_vae(), tmp_path / "vae"))
    for m in (model, loaded, copy.deepcopy(loaded).to(torch.bfloat16), vae):
        weights = _conv_weights(m)
        assert weights and all(w.is_contiguous(memory_format=CL) for w in weights)
    state = loaded.state_dict()  # handed out as plain contiguous tensors, so safetensors can save it as is
    assert all(t.is_contiguous() for t in state.values())
    assert all(t.is_contiguous(memory_format=CL) for t in loaded.state_dict(keep_vars=True).values() if t.ndim == 4)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)


def test_nchw_weights_switch_the_whole_network_to_nchw_with_the_same_result():
    config = CONFIGS["pixel"]
    model = _model(config)
    nchw_model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert all(w.is_contiguous() for w in _conv_weights(nchw_model))
    x, t, cond = _inputs(config)
    with torch.no_grad():
        torch.testing.assert_close(nchw_model(x, t, cond), model(x, t, cond), rtol=0, atol=1e-5)
