"""The shared layers match diffusers' bit for bit when loaded with diffusers' weights by name."""

import pytest
import torch

from tests.networks.helpers import perturb_parameters
from unstatic.networks.attention import Attention, Transformer2DModel
from unstatic.networks.embeddings import TimestepEmbedding, timestep_embedding
from unstatic.networks.resnet import Downsample2D, ResnetBlock2D, Upsample2D

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("only_cross", [False, True])
def test_transformer_2d_matches(linear, only_cross):
    from diffusers.models.transformers.transformer_2d import Transformer2DModel as Reference

    reference = perturb_parameters(Reference(2, 16, 32, num_layers=2, norm_num_groups=8, cross_attention_dim=24, use_linear_projection=linear, only_cross_attention=only_cross))
    ours = Transformer2DModel(2, 16, 32, num_layers=2, norm_num_groups=8, cross_attention_dim=24, use_linear_projection=linear, only_cross_attention=only_cross).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x, context = torch.randn(2, 32, 8, 8), torch.randn(2, 7, 24)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, context), reference(x, encoder_hidden_states=context).sample, rtol=0, atol=1e-5)


@pytest.mark.parametrize("norm", ["default", "scale_shift"])
@pytest.mark.parametrize("channels", [(32, 32), (32, 64)])
def test_resnet_block_matches(norm, channels):
    from diffusers.models.resnet import ResnetBlock2D as Reference

    reference = perturb_parameters(Reference(in_channels=channels[0], out_channels=channels[1], temb_channels=16, groups=8, time_embedding_norm=norm, output_scale_factor=2.0))
    ours = ResnetBlock2D(*channels, 16, groups=8, time_embedding_norm=norm, output_scale_factor=2.0).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x, temb = torch.randn(2, channels[0], 8, 8), torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, temb), reference(x, temb), rtol=0, atol=1e-5)


def test_spatial_attention_with_group_norm_and_residual_matches():
    from diffusers.models.attention_processor import Attention as Reference

    kwargs = dict(query_dim=32, heads=1, dim_head=32, bias=True, norm_num_groups=8, eps=1e-6, residual_connection=True, rescale_output_factor=2.0)
    reference = perturb_parameters(Reference(**kwargs))
    ours = Attention(**kwargs).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("padding", [0, 1])
def test_resampling_matches(padding):
    from diffusers.models.downsampling import Downsample2D as RefDown
    from diffusers.models.upsampling import Upsample2D as RefUp

    x = torch.randn(1, 8, 8, 8)
    down_ref = perturb_parameters(RefDown(8, use_conv=True, out_channels=16, padding=padding, name="op"))  # as U-Net and VAE blocks build it
    down = Downsample2D(8, True, 16, padding)
    down.load_state_dict(down_ref.state_dict(), strict=True)
    up_ref = perturb_parameters(RefUp(8, use_conv=True, out_channels=16))
    up = Upsample2D(8, True, 16)
    up.load_state_dict(up_ref.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(down(x), down_ref(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(up(x), up_ref(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("flip,shift", [(True, 0.0), (False, 1.0)])
def test_timestep_embedding_matches(flip, shift):
    from diffusers.models.embeddings import TimestepEmbedding as RefMLP
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 250.5, 999.0])
    torch.testing.assert_close(
        timestep_embedding(t, 32, flip, shift), get_timestep_embedding(t, 32, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    )
    reference = perturb_parameters(RefMLP(32, 64))
    ours = TimestepEmbedding(32, 64).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    e = torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(e), reference(e))


def test_geglu_matches_in_values_and_gradients_and_runs_hooks_on_its_projection():
    """Our GEGLU multiplies with the two halves of the projection's weight separately (faster on CPU); a hook on
    ``proj`` sends it through the module call instead, which must run the hook and give the same numbers."""
    from diffusers.models.activations import GEGLU as Reference

    from unstatic.networks.attention import GEGLU

    reference = perturb_parameters(Reference(16, 24))
    ours = GEGLU(16, 24)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 7, 16)
    grads = []
    for hooked in (False, True):
        calls = []
        handle = ours.proj.register_forward_hook(lambda *args: calls.append(1)) if hooked else None
        leaf = x.clone().requires_grad_()
        out = ours(leaf)
        torch.testing.assert_close(out, reference(x), rtol=0, atol=1e-5)
        out.square().sum().backward()
        grads.append((leaf.grad, ours.proj.weight.grad.clone()))
        ours.zero_grad()
        assert len(calls) == int(hooked)
        if handle is not None:
            handle.remove()
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
