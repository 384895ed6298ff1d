"""`unstatic train` and `unstatic sample` from the command line, including Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tests.training.tiny import TINY_UNET, _toml
from unstatic.cli import main
from unstatic.training.checkpoint import latest_checkpoint

pytest.importorskip("sklearn")


def _write_config(path, output_dir, steps: int) -> None:
    unet = "\n".join(f"{k} = {_toml(v)}" for k, v in TINY_UNET.items() if v is not None)
    path.write_text(f"""
output_dir = "{output_dir}"
steps = {steps}
batch_size = 4
log_every = 1
checkpoint_every = 1000
sample_every = 0

[data]
name = "digits"
resolution = 8

[diffusion]
conditioning = "class"

[model.unet]
{unet}
""")


def test_train_then_sample_from_the_cli(tmp_path):
    config = tmp_path / "digits.toml"
    _write_config(config, tmp_path / "run", steps=2)
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(config), "--quiet", "--set", "optim.lr=5e-4"])
    assert trained.exit_code == 0, trained.output
    assert "finished at step 2" in trained.output
    out = tmp_path / "grid.png"
    sampled = runner.invoke(main, ["sample", "--model", str(tmp_path / "run" / "model"), "--images", "3", "--steps", "2",
                                   "--label", "seven", "--label", "1", "--guidance", "2", "--out", str(out), "--seed", "3"])
    assert sampled.exit_code == 0, sampled.output
    assert out.stat().st_size > 100
    generated = runner.invoke(main, ["generate", "seven", "--model", str(tmp_path / "run" / "model"), "--images", "2",
                                     "--steps", "2", "--seed", "5", "--out", str(tmp_path / "digit.png")])
    assert generated.exit_code == 0, generated.output
    from PIL import Image

    infotext = Image.open(tmp_path / "digit-2.png").text["parameters"]
    assert infotext.startswith("seven\n") and "Seed: 6" in infotext and "Steps: 2" in infotext and "Sampler: DPM++ 2M" in infotext
    bad_label = runner.invoke(main, ["sample", "--model", str(tmp_path / "run" / "model"), "--label", "eleven", "--out", str(out)])
    assert bad_label.exit_code == 2 and "unknown class 'eleven'" in bad_label.output


def test_cli_names_bad_config_fields(tmp_path):
    config = tmp_path / "digits.toml"
    _write_config(config, tmp_path / "run", steps=2)
    runner = CliRunner()
    unknown = runner.invoke(main, ["train", str(config), "--set", "optim.learning_rate=1"])
    assert unknown.exit_code == 2 and "optim.learning_rate" in unknown.output
    bad = runner.invoke(main, ["train", str(config), "--set", "precision=fp8"])
    assert bad.exit_code == 2 and "precision" in bad.output
    missing = runner.invoke(main, ["train", str(config), "--set", 'data.name="folder"', "--set", f'data.options={{root = "{tmp_path / "nope"}"}}'])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    config = tmp_path / "digits.toml"
    _write_config(config, tmp_path / "run", steps=100_000)
    process = subprocess.Popen([sys.executable, "-m", "unstatic.cli", "train", str(config), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while (not metrics.exists() or metrics.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    assert "stopped at step" in out
    checkpoint = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert checkpoint is not None and f"step {int(checkpoint.name[5:])}" in out
