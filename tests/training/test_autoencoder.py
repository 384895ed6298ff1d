"""Training the autoencoder of latent diffusion (task = "autoencoder"): the loss, the exported VAE with its latent
scale measured on the data, previews with PSNR/SSIM, exact resume and the distributed slicing of its draws."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from tests.training.ddp_worker import train_on_two_processes
from tests.training.tiny import TINY_AUTOENCODER, TinyImages, tiny_config
from unstatic.networks.weights import load_model
from unstatic.training.autoencoder import INITIAL_LOGVAR, autoencoder_loss, build_autoencoder, latent_scale
from unstatic.training.autoencoder_task import AutoencoderTask
from unstatic.training.checkpoint import load_checkpoint
from unstatic.training.metrics import read_metrics
from unstatic.training.trainer import TrainingError, train


def ae_config(output, *overrides: str):
    return tiny_config(output, *TINY_AUTOENCODER, *overrides)


def images() -> TinyImages:
    return TinyImages(side=16)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("autoencoder")
    return train(ae_config(output, "sample_every = 6", "sample_count = 4", "steps = 6"), dataset=images(), progress=False)


def weights(**overrides):
    return SimpleNamespace(**{"l1_weight": 1.0, "l2_weight": 0.0, "ssim_weight": 0.0, "kl_weight": 0.0, **overrides})


def test_loss_terms():
    x = torch.zeros(2, 3, 16, 16)
    mean, logvar = torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4)
    assert float(autoencoder_loss(x, x, mean, logvar, weights(ssim_weight=0.5, kl_weight=1.0))) == 0.0  # perfect, N(0, I)
    assert float(autoencoder_loss(x, x + 0.25, mean, logvar, weights(l2_weight=2.0))) == pytest.approx(0.25 + 2 * 0.0625)
    # KL of N(1, 1) to N(0, 1) is 1/2 per latent value: 32 values per image over 768 pixel values
    kl = autoencoder_loss(x, x, mean + 1, logvar, weights(l1_weight=0.0, kl_weight=1.0))
    assert float(kl) == pytest.approx(0.5 * 32 / 768)
    assert float(autoencoder_loss(x, -x + 0.5, mean, logvar, weights(l1_weight=0.0, ssim_weight=1.0))) > 0


def test_architecture_must_divide_the_resolution():
    config = ae_config("unused").autoencoder
    vae = build_autoencoder(config, 3, 16)
    assert vae.config.downsampling_factor == 2
    with torch.no_grad():  # the posterior starts narrow (INITIAL_LOGVAR), so early samples are not mostly noise
        logvar = vae.encode(torch.zeros(1, 3, 16, 16)).logvar
    assert logvar.mean().item() == pytest.approx(INITIAL_LOGVAR, abs=1.0)
    with pytest.raises(ValueError, match="data.resolution 15 must be divisible by 2"):
        build_autoencoder(config, 3, 15)
    with pytest.warns(UserWarning, match="fewer than 2 channels per group"):
        build_autoencoder(ae_config("unused", "autoencoder.norm_num_groups = 8").autoencoder, 3, 16)


def test_trains_and_exports_a_scaled_vae(run):
    vae = load_model(run.model_dir)
    assert vae.config.latent_channels == 2 and vae.config.downsampling_factor == 2
    # the exported scale makes the data's latents unit-variance
    data = torch.stack([images()[i]["image"] for i in range(12)])
    latents = vae.encode_latents(data)
    assert latents.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)
    assert vae.config.scaling_factor == pytest.approx(latent_scale(vae, images(), 12), rel=1e-6)
    losses = [json.loads(line)["loss"] for line in (run.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_previews_show_reconstructions_and_their_quality(run):
    samples = run.output_dir / "samples"
    assert (samples / "step-00000006.png").is_file() and (samples / "latest.png").is_file()
    quality = json.loads((samples / "step-00000006.json").read_text())
    assert quality["step"] == 6 and quality["images"] == 4
    assert math.isfinite(quality["psnr"]) and -1 <= quality["ssim"] <= 1


def test_stopped_and_resumed_run_is_bit_identical(run, tmp_path):
    config = ae_config(tmp_path, "sample_every = 6", "sample_count = 4", "steps = 6")
    assert train(config, dataset=images(), progress=False, stop_after=4).step == 4
    resumed = train(config, dataset=images(), progress=False)
    a, b = load_checkpoint(run.checkpoint)[0], load_checkpoint(resumed.checkpoint)[0]
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


def test_two_ranks_compute_the_whole_batch(tmp_path):
    """Each rank draws the posterior noise for the global batch and takes its rows, so the mean of two ranks'
    losses on half batches equals one process's loss on the whole batch."""
    task = AutoencoderTask(ae_config(tmp_path), images(), torch.device("cpu"), progress=False)
    batch = {"image": torch.stack([images()[i]["image"] for i in range(4)])}

    def loss(rows: slice, world: int) -> float:
        part = {"image": batch["image"][rows] if world > 1 else batch["image"]}
        with torch.no_grad():
            return float(task.loss(task.forward_module, part, torch.Generator().manual_seed(3), rows, world))

    whole = loss(slice(0, 4), 1)
    assert (loss(slice(0, 2), 2) + loss(slice(2, 4), 2)) / 2 == pytest.approx(whole, rel=1e-5)


def test_crops_train_on_windows(tmp_path):
    task = AutoencoderTask(ae_config(tmp_path, "autoencoder.crop = 8", "autoencoder.ssim_weight = 0"), images(),
                           torch.device("cpu"), progress=False)
    seen = []

    def model(x, eps):
        seen.append((x.clone(), eps.shape))
        return x, torch.zeros(eps.shape), torch.zeros(eps.shape)

    batch = {"image": torch.stack([images()[i]["image"] for i in range(4)])}
    assert float(task.loss(model, batch, torch.Generator().manual_seed(0), slice(0, 4), 1)) == 0.0  # perfect model
    windows, eps_shape = seen[0]
    assert windows.shape == (4, 1, 8, 8) and eps_shape == (4, 2, 4, 4)
    for window, image in zip(windows, batch["image"]):  # each is a window of its own image
        assert any(torch.equal(window, image[:, t:t + 8, l:l + 8]) for t in range(9) for l in range(9))
    with pytest.raises(ValueError, match="autoencoder.crop 7 must be at most the image side 16 and a multiple of"):
        AutoencoderTask(ae_config(tmp_path, "autoencoder.crop = 7"), images(), torch.device("cpu"), progress=False)
    with pytest.raises(ValueError, match="ssim_weight needs windows of at least 11"):
        AutoencoderTask(ae_config(tmp_path, "autoencoder.crop = 8"), images(), torch.device("cpu"), progress=False)


def test_init_from_and_mismatches(run, tmp_path):
    started = train(ae_config(tmp_path / "a", f'init_from = "{run.model_dir}"', "optim.lr = 0", "steps = 1"),
                    dataset=images(), progress=False)
    original, loaded = load_model(run.model_dir).state_dict(), load_checkpoint(started.checkpoint)[0]["model"]
    assert all(torch.equal(original[k], loaded[k]) for k in original)
    with pytest.raises(TrainingError, match="has another architecture"):
        train(ae_config(tmp_path / "b", f'init_from = "{run.model_dir}"', "autoencoder.latent_channels = 3"),
              dataset=images(), progress=False)
    with pytest.raises(TrainingError, match="different \\[autoencoder\\] section"):
        train(ae_config(run.output_dir, "autoencoder.kl_weight = 1e-3"), dataset=images(), progress=False)
    with pytest.raises(TrainingError, match="different task"):
        train(tiny_config(run.output_dir, "data.resolution = 16"), dataset=images(), progress=False)


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="task 'vae' is not one of diffusion, autoencoder"):
        tiny_config(tmp_path, 'task = "vae"')
    with pytest.raises(ValueError, match="data.vae trains a diffusion model"):
        ae_config(tmp_path, 'data.vae = "somewhere"')


DISCRIMINATOR = ["autoencoder.disc_weight = 0.5", "autoencoder.disc_start = 2", "autoencoder.disc_layers = 2",
                 "autoencoder.disc_width = 8"]


def test_patch_discriminator_joins_at_disc_start_and_resumes_exactly(tmp_path):
    whole = train(ae_config(tmp_path / "whole", *DISCRIMINATOR), dataset=images(), progress=False)
    records = read_metrics(whole.output_dir / "metrics.jsonl")
    assert ["disc_loss" in r for r in records] == [False, False, True, True, True, True]  # steps 3-6 are adversarial
    assert all(r["adversarial_weight"] > 0 and math.isfinite(r["disc_loss"]) for r in records[2:])
    assert sorted(p.name for p in whole.model_dir.iterdir()) == ["config.json", "model.safetensors"]  # the VAE alone

    config = ae_config(tmp_path / "resumed", *DISCRIMINATOR)
    assert train(config, dataset=images(), progress=False, stop_after=3).step == 3
    resumed = train(config, dataset=images(), progress=False)
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    for part in ("model", "ema", "adversary"):
        assert all(torch.equal(a[0][part][k], b[0][part][k]) for k in a[0][part]), part
    moments = [(s["exp_avg"], t["exp_avg"]) for s, t in zip(a[1]["adversary_optimizer"]["state"].values(),
                                                             b[1]["adversary_optimizer"]["state"].values())]
    assert moments and all(torch.equal(s, t) for s, t in moments)


def test_two_ranks_train_the_discriminator_as_one_process(tmp_path):
    """The adaptive weight uses the gradients of the global batch and the discriminator's gradients are averaged
    over the ranks, so torchrun with 2 x batch 2 ends where one process with batch 4 does."""
    overrides = [*DISCRIMINATOR, "steps = 4", "autoencoder.disc_start = 1"]
    train_on_two_processes(tmp_path / "two", *TINY_AUTOENCODER, *overrides)
    one = train(ae_config(tmp_path / "one", *overrides), dataset=images(), progress=False)
    two = tmp_path / "two" / "checkpoints" / "step-00000004"
    start = train(ae_config(tmp_path / "zero", *overrides, "steps = 1", "optim.lr = 0"), dataset=images(),
                  progress=False)
    for part in ("model", "adversary"):
        trained, other, initial = (load_checkpoint(path)[0][part] for path in (one.checkpoint, two, start.checkpoint))
        difference = sum((trained[k] - other[k]).double().square().sum() for k in trained) ** 0.5
        update = sum((trained[k] - initial[k]).double().square().sum() for k in trained) ** 0.5
        assert update > 0 and difference / update < 1e-3, part
    weights = [r["adversarial_weight"] for r in read_metrics(tmp_path / "two" / "metrics.jsonl")[1:]]
    assert weights == pytest.approx([r["adversarial_weight"] for r in read_metrics(one.output_dir / "metrics.jsonl")[1:]],
                                    rel=1e-4)


def test_discriminator_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="disc_layers = 3 needs images \\(or crops\\) of at least 24 pixels, these are 16"):
        AutoencoderTask(ae_config(tmp_path, *DISCRIMINATOR, "autoencoder.disc_layers = 3"), images(),
                        torch.device("cpu"), progress=False)
    with pytest.raises(ValueError, match="disc_start and disc_weight not negative"):
        AutoencoderTask(ae_config(tmp_path, *DISCRIMINATOR, "autoencoder.disc_start = -1"), images(),
                        torch.device("cpu"), progress=False)
