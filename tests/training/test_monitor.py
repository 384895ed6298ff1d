"""Training monitoring: the JSONL metrics log across crashes and resumes, the loss-curve PNG, the progress display."""

from __future__ import annotations

import io
import json
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

from unstatic.training.monitor import DebiasedEma, MetricsLog, Progress, plot_loss_curve, read_metrics


def _strict_json(line: str) -> dict:
    """Parse as standard JSON: Python's json accepts NaN/Infinity, which other parsers reject."""

    def reject(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(line, parse_constant=reject)


# --- MetricsLog / read_metrics ---------------------------------------------------------------------------


def test_metrics_round_trip_and_flush_on_every_write(tmp_path):
    path = tmp_path / "metrics.jsonl"
    before = time.time()
    with MetricsLog(path) as log:
        for step in range(1, 6):
            log.write(step, loss=1.0 / step, lr=1e-4, tokens=step * 64)
            # Readable while the log is still open: each write is flushed.
            assert [r["step"] for r in read_metrics(path)] == list(range(1, step + 1))
    records = read_metrics(path)
    assert [r["loss"] for r in records] == [1.0 / step for step in range(1, 6)]
    assert all(r["lr"] == 1e-4 for r in records)
    assert [r["tokens"] for r in records] == [64, 128, 192, 256, 320] and isinstance(records[0]["tokens"], int)
    times = [r["time"] for r in records]
    assert before - 1 <= times[0] <= times[-1] <= time.time() + 1
    for line in path.read_text().splitlines():
        assert set(_strict_json(line)) == {"step", "time", "loss", "lr", "tokens"}


def test_metrics_accept_tensor_and_numpy_scalars(tmp_path):
    with MetricsLog(tmp_path / "m.jsonl") as log:
        log.write(np.int64(3), loss=torch.tensor(0.25), grad_norm=np.float32(2.0))
    (record,) = read_metrics(tmp_path / "m.jsonl")
    assert record["step"] == 3 and record["loss"] == 0.25 and record["grad_norm"] == 2.0


def test_non_finite_values_are_valid_json_null_and_read_back_as_nan(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.write(1, loss=float("nan"), grad_norm=float("inf"), lr=float("-inf"), ok=0.5)
    (line,) = path.read_text().splitlines()
    parsed = _strict_json(line)
    assert parsed["loss"] is None and parsed["grad_norm"] is None and parsed["lr"] is None and parsed["ok"] == 0.5
    (record,) = read_metrics(path)
    assert math.isnan(record["loss"]) and math.isnan(record["grad_norm"]) and record["ok"] == 0.5


def test_truncated_last_line_is_skipped_but_a_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for step in range(1, 4):
            log.write(step, loss=float(step))
    full = path.read_text()
    last_line = full.splitlines()[-1]
    for cut in (1, len(last_line) // 2, len(last_line) - 1):  # died part way through writing step 3
        path.write_text(full[: len(full) - len(last_line) - 1 + cut])
        assert [r["step"] for r in read_metrics(path)] == [1, 2]
    lines = full.splitlines()
    path.write_text("\n".join([lines[0], lines[1][:10], lines[2]]) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(path)


def test_resume_drops_the_lost_future_and_keeps_the_past_verbatim(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for step in range(10, 101, 10):
            log.write(step, loss=1.0 / step)
    original_lines = path.read_text().splitlines()
    with MetricsLog(path, resume_step=60) as log:
        assert [r["step"] for r in read_metrics(path)] == [10, 20, 30, 40, 50, 60]
        for step in (70, 80):
            log.write(step, loss=-1.0)
    assert path.read_text().splitlines()[:6] == original_lines[:6]  # earlier records (and times) untouched
    records = read_metrics(path)
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert [r["loss"] for r in records[-2:]] == [-1.0, -1.0]
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.jsonl"], "temporary file left behind"


def test_resume_after_a_crash_mid_line_leaves_a_valid_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "time": 0, "loss": 0.5}\n{"step": 2, "time": 0, "lo')
    with MetricsLog(path, resume_step=5) as log:
        log.write(3, loss=0.25)
    assert [r["step"] for r in read_metrics(path)] == [1, 3]
    for line in path.read_text().splitlines():
        _strict_json(line)


def test_resume_without_a_log_starts_one_and_a_fresh_run_replaces_the_old_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path, resume_step=7) as log:
        log.write(8, loss=1.0)
    assert [r["step"] for r in read_metrics(path)] == [8]
    with MetricsLog(path) as log:
        log.write(1, loss=2.0)
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 2.0)]


def test_metrics_log_rejects_bad_input(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="time"):
        log.write(1, time=3.0)
    with pytest.raises(ValueError, match="loss"):
        log.write(1, loss="low")
    with pytest.raises(ValueError, match="step"):
        log.write(-1, loss=1.0)
    with pytest.raises(ValueError, match="step"):
        log.write(1.5, loss=1.0)
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.write(2, loss=1.0)
    with pytest.raises(ValueError, match="resume_step"):
        MetricsLog(tmp_path / "m.jsonl", resume_step=-1)
    with pytest.raises(FileNotFoundError):
        MetricsLog(tmp_path / "missing" / "m.jsonl")
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "nothing.jsonl")


# --- DebiasedEma ------------------------------------------------------------------------------------------


def test_debiased_ema_is_the_normalised_exponentially_weighted_mean():
    """Adam's correction m_t / (1 - beta^t) equals sum(beta^(t-i) x_i) / sum(beta^(t-i)): check that identity."""
    beta = 0.9
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    ema = DebiasedEma(beta)
    for t in range(1, len(values) + 1):
        got = ema.update(values[t - 1])
        weights = [beta ** (t - i) for i in range(1, t + 1)]
        expected = sum(w * x for w, x in zip(weights, values[:t])) / sum(weights)
        assert got == pytest.approx(expected, rel=1e-12)


def test_debiased_ema_has_no_start_up_bias_and_skips_non_finite_values():
    ema = DebiasedEma(0.98)
    assert math.isnan(ema.value)
    for value in (2.5, float("nan"), 2.5, float("inf"), 2.5):
        assert ema.update(value) == pytest.approx(2.5, rel=1e-12)
    with pytest.raises(ValueError, match="smoothing"):
        DebiasedEma(1.0)


# --- plot_loss_curve --------------------------------------------------------------------------------------


def _curve_pixels(path, dark_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the blue curve pixels, away from the header, footer and y labels."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red, blue = pixels[..., 0], pixels[..., 2]
    blue_ish = (blue - red > 60) & ((red < 110) if dark_only else True)
    height, width = blue_ish.shape
    region = np.zeros_like(blue_ish)
    region[int(0.12 * height) : int(0.85 * height), int(0.12 * width) : int(0.97 * width)] = True
    return np.nonzero(blue_ish & region)


def _decaying_losses(count: int, increasing: bool = False, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    losses = 0.05 + np.exp(-np.arange(count) / (count / 4)) * np.exp(rng.normal(0, 0.3, count))
    if increasing:
        losses = losses[::-1]
    return [{"step": 10 * i, "time": 0.0, "loss": float(v)} for i, v in enumerate(losses)]


@pytest.mark.parametrize("log_y", [True, False])
@pytest.mark.parametrize("increasing", [False, True])
def test_loss_curve_png_has_the_size_and_a_line_going_the_right_way(tmp_path, log_y, increasing):
    path = plot_loss_curve(_decaying_losses(300, increasing), tmp_path / "loss.png", log_y=log_y, size=(640, 400))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (640, 400)
    rows, columns = _curve_pixels(path)
    assert len(rows) > 200, "no smoothed curve drawn"
    middle = 640 / 2
    left_mean, right_mean = rows[columns < middle].mean(), rows[columns >= middle].mean()
    # Image rows grow downwards: a falling loss has its right half lower on screen, i.e. larger rows.
    if increasing:
        assert right_mean < left_mean - 20
    else:
        assert right_mean > left_mean + 20
    assert not [p for p in tmp_path.iterdir() if p.name != "loss.png"], "temporary file left behind"


@pytest.mark.parametrize(
    "records",
    [
        [],
        [{"step": 5, "loss": 0.3}],
        [{"step": 1, "loss": float("nan")}, {"step": 2, "loss": float("inf")}],
        [{"step": s, "loss": float("nan") if s % 3 == 0 else 1.0 / s} for s in range(1, 50)],
        [{"step": 1, "lr": 0.1}, {"step": 2, "loss": 0.5}, {"step": 3, "loss": 0.4}],  # key missing in some
        [{"step": s, "loss": float(s - 10)} for s in range(20)],  # zero and negatives: log scale impossible
        [{"step": s, "loss": 0.7} for s in range(20)],  # constant
    ],
    ids=["empty", "one", "all-non-finite", "some-nan", "missing-key", "non-positive", "constant"],
)
def test_loss_curve_survives_awkward_records(tmp_path, records):
    path = plot_loss_curve(records, tmp_path / "loss.png", size=(400, 300))
    with Image.open(path) as image:
        assert image.size == (400, 300)
    finite = [r for r in records if math.isfinite(r.get("loss", math.nan))]
    drawn = len(_curve_pixels(path, dark_only=False)[0])
    assert (drawn > 0) == bool(finite)


def test_loss_curve_reads_a_metrics_log_and_overwrites_atomically(tmp_path):
    log_path = tmp_path / "metrics.jsonl"
    with MetricsLog(log_path) as log:
        for record in _decaying_losses(50):
            log.write(record["step"], loss=record["loss"])
    out = tmp_path / "loss.png"
    plot_loss_curve(read_metrics(log_path), out, title="training loss")
    first = out.read_bytes()
    plot_loss_curve(read_metrics(log_path)[:10], out)
    assert out.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "metrics.jsonl"]


def test_loss_curve_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="size"):
        plot_loss_curve([], tmp_path / "a.png", size=(50, 50))
    with pytest.raises(ValueError, match="smoothing"):
        plot_loss_curve([], tmp_path / "a.png", smoothing=1.0)
    with pytest.raises(FileNotFoundError):
        plot_loss_curve([], tmp_path / "missing" / "a.png")


# --- Progress ---------------------------------------------------------------------------------------------


class _FakeClock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def test_disabled_progress_prints_nothing(capsys):
    with Progress(10, enabled=False, interval_s=0) as progress:
        for step in range(1, 11):
            progress.update(step, loss=0.5)
        progress.write("hello")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_plain_lines_when_stderr_is_not_a_terminal(capsys):
    with Progress(10, interval_s=0) as progress:
        for step in range(1, 4):
            progress.update(step, loss=0.25, lr=3e-4)
        progress.write("checkpoint saved")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert "step 3/10" in lines[2] and "loss 0.25" in lines[2] and "lr 0.0003" in lines[2]
    assert lines[-1] == "checkpoint saved"
    assert "\r" not in captured.err  # no bar redraws in logs


def test_speed_and_eta_exclude_the_first_step():
    stream = io.StringIO()
    # The first update (step 1) arrives after a long warm-up; ten more steps then take 5 s.
    progress = Progress(101, interval_s=0, stream=stream, clock=_FakeClock([100.0, 105.0]))
    progress.update(1, loss=1.0)
    progress.update(11, loss=1.0)
    first, second = stream.getvalue().splitlines()
    assert "? steps/s" in first and "ETA ?" in first
    rate = (11 - 1) / (105.0 - 100.0)
    assert f"{rate:.2f} steps/s" in second
    assert f"ETA {round((101 - 11) / rate)}s" in second


def test_plain_lines_are_rate_limited_and_the_last_state_is_printed_on_close():
    stream = io.StringIO()
    progress = Progress(20, interval_s=30, stream=stream, clock=_FakeClock([float(t) for t in range(100)]))
    for step in range(1, 20):  # one second per step: only t=0 and t=30+ would print
        progress.update(step, loss=0.5)
    assert len(stream.getvalue().splitlines()) == 1
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("step 19/20")
    progress.update(20, loss=0.5)  # the final step always prints
    assert stream.getvalue().splitlines()[-1].startswith("step 20/20")


def test_loss_is_smoothed_but_a_nan_loss_is_shown(capsys):
    with Progress(10, interval_s=0) as progress:
        progress.update(1, loss=1.0)
        progress.update(2, loss=3.0)
        progress.update(3, loss=float("nan"))
    lines = capsys.readouterr().err.splitlines()
    expected = (0.98 * 1.0 + 3.0) / (1 + 0.98)  # debiased EMA of [1, 3]: weights 0.98 and 1
    assert f"loss {expected:.4g}" in lines[1]
    assert "loss nan" in lines[2]


def test_terminal_mode_draws_a_tqdm_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with Progress(10, initial_step=4, stream=stream) as progress:
        for step in range(5, 11):
            progress.update(step, loss=0.125)
        progress.write("message")
    output = stream.getvalue()
    assert "10/10" in output and "loss 0.125" in output and "message" in output


def test_progress_rejects_bad_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        Progress(0)
    with pytest.raises(ValueError, match="initial_step"):
        Progress(10, initial_step=-1)


def test_atomic_writes_get_the_permissions_of_a_plain_file(tmp_path):
    import os
    import stat

    from unstatic.training.metrics import write_atomically

    previous = os.umask(0o022)
    try:
        write_atomically(tmp_path / "grid.png", b"data")
        (tmp_path / "plain.png").write_bytes(b"data")
    finally:
        os.umask(previous)
    modes = [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("grid.png", "plain.png")]
    assert modes[0] == modes[1] == 0o644
    assert (tmp_path / "grid.png").read_bytes() == b"data" and not list(tmp_path.glob(".*.tmp"))
