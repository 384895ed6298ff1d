"""Latent diffusion training (data.vae): the images are encoded once into a cache keyed by the VAE and the data,
the model trains on the latents, and the exported folder carries the VAE and generates pixels."""

from __future__ import annotations

import pytest
import torch

from tests.training.tiny import TINY_AUTOENCODER, TinyImages, tiny_config
from unstatic.models import load_diffusion_model
from unstatic.networks.weights import save_model
from unstatic.sampling.from_model import sample_model
from unstatic.training import latent_cache
from unstatic.training.autoencoder import build_autoencoder
from unstatic.training.latent_cache import LatentDataset
from unstatic.training.trainer import train


def images() -> TinyImages:
    return TinyImages(side=16)


def vae_folder(path, seed: int = 0):
    torch.manual_seed(seed)
    config = tiny_config(path, *TINY_AUTOENCODER).autoencoder
    save_model(build_autoencoder(config, 1, 16), path)
    return path


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    vae_folder(folder)
    return folder


@pytest.fixture(scope="module")
def run(vae, tmp_path_factory):
    output = tmp_path_factory.mktemp("latent")
    config = tiny_config(output, f'data.vae = "{vae}"', "data.resolution = 16", "sample_every = 6", "sample_count = 3")
    return train(config, dataset=images(), progress=False)


def test_latents_are_the_scaled_posterior_means(vae, tmp_path):
    from unstatic.networks.weights import load_model

    model = load_model(vae)
    data = LatentDataset(images(), model, tmp_path, {"name": "tiny"}, progress=False)
    assert len(data) == 24 and data[5]["caption"] == images()[5]["caption"] and data[5]["label"] == images()[5]["label"]
    expected = model.encode_latents(images()[5]["image"][None])[0]
    torch.testing.assert_close(data[5]["image"], expected.half().float(), rtol=0, atol=0)


def test_the_cache_is_built_once_and_keyed(vae, tmp_path, monkeypatch):
    from unstatic.networks.weights import load_model

    model = load_model(vae)
    first = LatentDataset(images(), model, tmp_path, {"name": "tiny"}, progress=False)
    monkeypatch.setattr(latent_cache, "encode_dataset", lambda *a, **k: pytest.fail("encoded again"))
    assert LatentDataset(images(), model, tmp_path, {"name": "tiny"}, progress=False).path == first.path
    key = latent_cache.cache_key(model, images(), {"name": "tiny"})
    other_vae = load_model(vae_folder(tmp_path / "other", seed=1))
    assert latent_cache.cache_key(other_vae, images(), {"name": "tiny"}) != key
    assert latent_cache.cache_key(model, images(), {"name": "tiny", "options": {"seed": 1}}) != key
    assert latent_cache.cache_key(model, TinyImages(side=16, count=23), {"name": "tiny"}) != key
    negated = [{**item, "image": -item["image"]} for item in images()]  # same description and length, other images
    assert latent_cache.cache_key(model, negated, {"name": "tiny"}) != key


def test_trained_latent_model_generates_pixels(run):
    model = load_diffusion_model(run.model_dir)
    assert model.spec.latent and model.vae is not None and model.spec.image_size == 8 and model.spec.channels == 2
    assert list((run.output_dir / "latents").glob("latents-*.safetensors"))
    latents = sample_model(model, 2, sampler="euler", steps=2, seed=1, labels=[0, 1])
    assert latents.shape == (2, 2, 8, 8)
    assert model.decode(latents).shape == (2, 1, 16, 16)


def test_previews_are_decoded(run, tmp_path, monkeypatch):
    from PIL import Image

    from unstatic.models.folder import DiffusionModel
    from unstatic.training.config import load_config
    from unstatic.training.previews import write_previews

    decoded = []
    real_decode = DiffusionModel.decode
    monkeypatch.setattr(DiffusionModel, "decode", lambda self, x: decoded.append(x.shape) or real_decode(self, x))
    config = load_config(run.output_dir / "train_config.json")
    path = write_previews(load_diffusion_model(run.model_dir), tmp_path, 6, config)
    assert decoded == [(3, 2, 8, 8)]  # the sampled latents went through the VAE
    assert Image.open(path).mode == "RGB" and (run.output_dir / "samples" / "step-00000006.png").is_file()


def test_a_missing_vae_is_named(tmp_path):
    with pytest.raises(ValueError, match="data.vae='nowhere' cannot be loaded as a VAE folder"):
        train(tiny_config(tmp_path, 'data.vae = "nowhere"', "data.resolution = 16"), dataset=images(), progress=False)
