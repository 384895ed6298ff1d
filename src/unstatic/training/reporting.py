"""What a run shows while it trains: the progress bar, ``metrics.jsonl`` (one line per ``log_every`` steps:
mean loss, learning rate, gradient norm, steps/s and images/s over the interval) and ``loss.png``."""

from __future__ import annotations

import time
from pathlib import Path

from unstatic.training.metrics import MetricsLog, read_metrics
from unstatic.training.monitor import Progress
from unstatic.training.plots import plot_loss_curve


class TrainingMonitor:
    def __init__(self, output: Path, config, start_step: int, enabled: bool, is_main: bool) -> None:
        self.output, self.config = Path(output), config
        self.metrics_path = self.output / "metrics.jsonl"
        self.log = MetricsLog(self.metrics_path, resume_step=start_step or None) if is_main else None
        self.progress = Progress(config.steps, initial_step=start_step, enabled=enabled)
        self._reset(start_step)

    def _reset(self, step: int) -> None:
        self._losses: list[float] = []
        self._grad_norms: list[float] = []
        self._extra: dict[str, list[float]] = {}
        self._since, self._since_step = time.perf_counter(), step

    def record(self, step: int, loss: float, lr: float, grad_norm: float, extra: dict[str, float] | None = None) -> None:
        """``extra``: a task's own metrics of the step (e.g. the discriminator's loss), logged as interval means."""
        self.progress.update(step, loss)
        self._losses.append(loss)
        self._grad_norms.append(grad_norm)
        for name, value in (extra or {}).items():
            self._extra.setdefault(name, []).append(value)
        if step % self.config.log_every == 0 or step == self.config.steps:
            self.flush(step, lr)

    def flush(self, step: int, lr: float) -> None:
        if not self._losses:
            return
        elapsed = max(time.perf_counter() - self._since, 1e-9)
        steps_per_s = (step - self._since_step) / elapsed
        if self.log is not None:
            self.log.write(
                step, loss=sum(self._losses) / len(self._losses), lr=lr,
                grad_norm=sum(self._grad_norms) / len(self._grad_norms), steps_per_s=steps_per_s,
                images_per_s=steps_per_s * self.config.batch_size * self.config.grad_accum,
                **{name: sum(values) / len(values) for name, values in self._extra.items()},
            )
        self._reset(step)

    def plot(self) -> Path | None:
        if self.log is None:
            return None
        records = read_metrics(self.metrics_path)
        # Smooth over about a tenth of the run, whatever log_every is: 0.98 per record lags far behind on a
        # short run logged every 20 steps.
        smoothing = min(0.98, max(0.0, 1 - 10 / max(len(records), 1)))
        return plot_loss_curve(records, self.output / "loss.png", smoothing=smoothing, title="training loss")

    def write(self, message: str) -> None:
        self.progress.write(message)

    def close(self) -> None:
        self.progress.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
