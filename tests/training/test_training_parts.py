"""The trainer's small parts: config files and overrides, learning rate, EMA, checkpoint files, data order."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unstatic.models import DiffusionSpec, ScheduleSpec
from unstatic.training import checkpoint as ckpt
from unstatic.training.batches import BatchStream, derive_seed
from unstatic.training.config import load_config
from unstatic.training.ema import EMA
from unstatic.training.lr import learning_rate

# -- config ---------------------------------------------------------------------------------------------


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('steps = 50\n[optim]\nlr = 3e-4\nbetas = [0.9, 0.99]\n[diffusion.schedule]\nkind = "discrete"\n')
    config = load_config(path, ["optim.lr=1e-3", "data.name=digits", 'precision="bf16"'])
    assert config.steps == 50 and config.optim.lr == 1e-3 and config.optim.betas == (0.9, 0.99)
    assert config.data.name == "digits" and config.precision == "bf16" and config.diffusion.schedule.kind == "discrete"
    saved = tmp_path / "saved.json"
    config.save(saved)
    assert load_config(saved) == config  # the resolved config saved with checkpoints reads back identically


@pytest.mark.parametrize("override, field", [
    ("optim.lrr=1", "optim.lrr"), ("steps=0", "steps"), ("precision=fp16", "precision"),
    ("diffusion.cond_dropout=2", "cond_dropout"), ("optim=3", "optim"), ("noequals", "section.field=value"),
    ('diffusion.schedule.kind="cosine"', "schedule.kind"), ("optim.lr_schedule=linear", "lr_schedule"),
])
def test_bad_config_values_name_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(None, [override])


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 3")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(broken)


# -- learning rate and EMA ------------------------------------------------------------------------------


def test_learning_rate_warmup_then_cosine():
    rates = [learning_rate(s, 110, 1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1) for s in range(110)]
    assert rates[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert rates[10] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[-1] > 0.1
    assert learning_rate(500, 110, 2.0, 10, "constant") == 2.0
    with pytest.raises(ValueError, match="schedule"):
        learning_rate(20, 110, 1.0, 10, "linear")


def test_ema_follows_the_formula_with_warmup():
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9, warmup=True)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first decay min(0.9, 1/10) = 0.1: mostly the new weights
    expected = 0.1 * start["weight"] + 0.9 * model.weight
    torch.testing.assert_close(ema.state_dict()["weight"], expected)
    for _ in range(200):
        ema.update(model)
    assert ema.current_decay() == 0.9
    torch.testing.assert_close(ema.state_dict()["weight"], model.weight.detach())  # converges to constant weights
    plain = EMA(model, decay=0.9, warmup=False)
    assert plain.current_decay() == 0.9
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


# -- checkpoints ----------------------------------------------------------------------------------------


def test_optimizer_state_round_trips_without_pickle(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(8, 4)).square().mean().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": ckpt.rng_state(), "step": 7, "nested": [1.5, None, "x"]}
    path = ckpt.save_checkpoint(tmp_path, 7, {"model": model.state_dict()}, state, {"steps": 9}, keep=3)
    weights, loaded, config = ckpt.load_checkpoint(path)
    assert config == {"steps": 9} and loaded["step"] == 7 and loaded["nested"] == [1.5, None, "x"]
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    for index, slots in optimizer.state_dict()["state"].items():
        for name, value in slots.items():
            assert torch.equal(value, fresh.state_dict()["state"][index][name])
    assert torch.equal(loaded["rng"]["cpu"], state["rng"]["cpu"])
    assert all(not p.suffix == ".pt" and not p.suffix == ".pkl" for p in path.iterdir())


def test_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    tensors = {"model": {"w": torch.ones(2)}}
    ckpt.save_checkpoint(tmp_path, 1, tensors, {"step": 1}, {}, keep=2)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 2, tensors, {"step": 2}, {}, keep=2)
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000001"
    assert ckpt.remove_stale_temporaries(tmp_path)  # the half-written folder is found and removed
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]


def test_keep_last_k(tmp_path):
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, step, {"model": {"w": torch.full((1,), float(step))}}, {}, {}, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000004", "step-00000005"]
    with pytest.raises(FileNotFoundError, match="incomplete"):
        ckpt.load_checkpoint(tmp_path)


# -- data order -----------------------------------------------------------------------------------------


def test_ranks_partition_the_global_batch_and_epochs_cover_the_data():
    size, batch = 10, 4
    single = BatchStream(size, batch, seed=3)
    ranks = [BatchStream(size, batch, seed=3, rank=r, world=2) for r in range(2)]
    for number in range(7):
        assert ranks[0].micro_batch(number) + ranks[1].micro_batch(number) == single.micro_batch(number)
    first_epoch = [i for n in range(5) for e, i in single.micro_batch(n) if e == 0]
    assert sorted(first_epoch) == list(range(size))
    resumed = BatchStream(size, batch, seed=3, start=4, count=2)
    assert list(resumed) == [single.micro_batch(4), single.micro_batch(5)]
    with pytest.raises(ValueError, match="divisible"):
        BatchStream(size, 5, seed=0, world=2)


def test_derived_seeds_differ():
    seeds = {derive_seed(0, step) for step in range(1000)} | {derive_seed(1, step) for step in range(1000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**63 for s in seeds)


# -- model spec -----------------------------------------------------------------------------------------


def test_model_spec_round_trip_and_errors():
    spec = DiffusionSpec(prediction="v", schedule=ScheduleSpec(kind="discrete", beta_schedule="cosine"),
                         conditioning="class", num_classes=2, class_names=("a", "b"), channels=1, image_size=16)
    assert DiffusionSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown DiffusionSpec fields"):
        DiffusionSpec.from_dict({**spec.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="version"):
        DiffusionSpec.from_dict({**spec.to_dict(), "version": 99})
    with pytest.raises(ValueError, match="num_classes"):
        DiffusionSpec(conditioning="class")
    with pytest.raises(ValueError, match="schedule.kind"):
        ScheduleSpec(kind="cosine")



def test_inpainting_masks_are_rectangles_or_full_and_reproducible():
    from unstatic.training.inpaint_masks import random_masks

    masks = random_masks(400, 16, 12, torch.Generator().manual_seed(0))
    assert masks.shape == (400, 1, 16, 12) and set(masks.unique().tolist()) <= {0.0, 1.0}
    full = masks.flatten(1).all(1)
    assert 0.18 < full.float().mean() < 0.32  # about a quarter repaint everything
    partial = masks[~full]
    assert (partial.flatten(1).sum(1) >= 1).all() and (partial.flatten(1).mean(1) < 1).all()
    again = random_masks(7, 16, 12, torch.Generator().manual_seed(0))
    assert torch.equal(again, masks[:7])  # image i's mask does not depend on how many are drawn
    assert not torch.equal(random_masks(7, 16, 12, torch.Generator().manual_seed(1)), again)
    with pytest.raises(ValueError, match="full"):
        random_masks(1, 4, 4, torch.Generator(), full=1.5)
