"""Parity with diffusers' AutoencoderKL: a random-weight model in SD's layout (small channels), saved with
``save_pretrained`` and loaded with our loader, must give the same posterior and reconstruction in fp32."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from tests.networks.helpers import perturb_parameters, relative_error  # noqa: E402
from unstatic.networks.vae import AutoencoderKL  # noqa: E402

TOLERANCE = 1e-5  # max |ours - diffusers| / max |diffusers|


def diffusers_vae(**overrides):
    kwargs = dict(
        block_out_channels=(16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8,
        layers_per_block=2,
        latent_channels=4,
        sample_size=32,
    )
    torch.manual_seed(0)
    return perturb_parameters(diffusers.AutoencoderKL(**{**kwargs, **overrides}))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"use_quant_conv": False, "use_post_quant_conv": False},
        {"mid_block_add_attention": False, "scaling_factor": 0.3611, "shift_factor": 0.1159},
    ],
    ids=["sd", "no-quant-convs", "no-mid-attention-shifted"],
)
def test_matches_diffusers(tmp_path, single_thread, overrides):
    reference = diffusers_vae(**overrides)
    reference.save_pretrained(tmp_path)
    ours = AutoencoderKL.from_diffusers_folder(tmp_path).eval()
    assert ours.config.scaling_factor == reference.config.scaling_factor
    assert ours.config.shift_factor == reference.config.shift_factor

    x = torch.randn(2, 3, 32, 40, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    z = torch.randn(2, 4, 4, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference.encode(x).latent_dist
        posterior = ours.encode(x)
        assert relative_error(posterior.mean, expected.mean) <= TOLERANCE
        assert relative_error(posterior.logvar, expected.logvar) <= TOLERANCE
        assert relative_error(posterior.sample(torch.Generator().manual_seed(3)), expected.sample(torch.Generator().manual_seed(3))) <= TOLERANCE
        torch.testing.assert_close(posterior.kl(), expected.kl(), rtol=1e-5, atol=1e-5)
        assert relative_error(ours.decode(z), reference.decode(z).sample) <= TOLERANCE
        # the diffusion-side convention used by diffusers' pipelines
        shift = reference.config.shift_factor or 0.0
        latents = ours.encode_latents(x)
        assert relative_error(latents, (expected.mean - shift) * reference.config.scaling_factor) <= TOLERANCE
        pipeline_decode = reference.decode(latents / reference.config.scaling_factor + shift).sample
        assert relative_error(ours.decode_latents(latents), pipeline_decode) <= TOLERANCE


def test_sd_checkpoint_keys_match_exactly(tmp_path):
    """Every parameter name of diffusers' SD-layout VAE exists in ours with the same shape, and vice versa."""
    reference = diffusers_vae()
    reference.save_pretrained(tmp_path)
    ours = AutoencoderKL.from_diffusers_folder(tmp_path)
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == theirs
