"""The training progress display: a tqdm bar on a terminal, plain periodic lines in logs and CI.

Shows ``step/total``, the smoothed loss, steps per second and the time left. **Speed and ETA are
measured from the first update after the (re)start, not from construction**: the first step carries
one-off warm-up (allocator growth, kernel selection, data-loader start, ``torch.compile``), and
counting it would make the early ETA far too pessimistic. So the speed is
``(step - first_step) / (now - time_of_first_update)``, unknown ("?") until a second distinct step.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

from unstatic.training.metrics import DebiasedEma


class Progress:
    """Reports training progress to stderr; a no-op when ``enabled`` is False (non-zero ranks).

    On a terminal this is a tqdm bar; when stderr is not a TTY (a log file, CI) it prints one plain line
    per ``interval_s`` seconds instead, plus the last step, since a redrawn bar turns a log into noise.
    ``smoothing`` is the decay of the loss's moving average (:class:`DebiasedEma`). ``stream`` and
    ``clock`` exist for tests.
    """

    def __init__(
        self,
        total_steps: int,
        initial_step: int = 0,
        enabled: bool = True,
        *,
        interval_s: float = 30.0,
        smoothing: float = 0.98,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        if isinstance(initial_step, bool) or not isinstance(initial_step, int) or not 0 <= initial_step:
            raise ValueError(f"initial_step must be a non-negative int, got {initial_step!r}")
        if not interval_s >= 0:
            raise ValueError(f"interval_s must be >= 0 seconds, got {interval_s!r}")
        self.total_steps = total_steps
        self.enabled = enabled
        self._interval_s = float(interval_s)
        self._loss = DebiasedEma(smoothing)
        self._clock = clock
        self._stream = stream if stream is not None else sys.stderr
        self._step = initial_step
        self._first: tuple[int, float] | None = None  # (step, time) of the first update since the (re)start
        self._line = ""
        self._printed_line = ""
        self._last_print = -math.inf
        self._bar: tqdm | None = None
        if enabled and _is_terminal(self._stream):
            self._bar = tqdm(
                total=total_steps,
                initial=initial_step,
                file=self._stream,
                dynamic_ncols=True,
                # tqdm's own rate and ETA would include the warm-up step; ours are in the postfix, which
                # tqdm prefixes with ", ".
                bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}",
            )

    def update(self, step: int, loss: float, **extra: float) -> None:
        """Record that ``step`` is done with this ``loss``; ``extra`` values (e.g. ``lr``) are shown as is."""
        if not self.enabled:
            return
        now = self._clock()
        if self._first is None:
            self._first = (step, now)
        self._step = step
        loss = float(loss)
        # A NaN or inf loss is shown as is: the average skips it, but hiding a divergence would be worse.
        shown_loss = self._loss.update(loss) if math.isfinite(loss) else loss
        rate = self._steps_per_second(now)
        eta = (self.total_steps - step) / rate if rate else None
        fields = [f"loss {_format_number(shown_loss)}", _format_speed(rate), f"ETA {_format_eta(eta)}"]
        fields += [f"{name} {_format_number(value)}" for name, value in extra.items()]
        if self._bar is not None:
            self._bar.set_postfix_str(" | ".join(fields), refresh=False)
            self._bar.update(step - self._bar.n)  # redraws at most every tqdm mininterval (0.1 s)
            return
        self._line = f"step {step}/{self.total_steps} ({100 * step / self.total_steps:.1f}%) | " + " | ".join(fields)
        if now - self._last_print >= self._interval_s or step >= self.total_steps:
            self._print(now)

    def write(self, message: str) -> None:
        """Print ``message`` on its own line without breaking the bar (nothing when disabled)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        else:
            print(message, file=self._stream, flush=True)

    def close(self) -> None:
        """Finish the display: close the bar, or print the latest line if it has not been printed yet."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._line and self._line != self._printed_line:
            self._print(self._clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _steps_per_second(self, now: float) -> float | None:
        """Steps per second since the first update of this (re)start, or None while it cannot be measured."""
        assert self._first is not None
        first_step, first_time = self._first
        if self._step <= first_step or now <= first_time:
            return None
        return (self._step - first_step) / (now - first_time)

    def _print(self, now: float) -> None:
        print(self._line, file=self._stream, flush=True)
        self._printed_line, self._last_print = self._line, now


def _is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (captured or redirected streams are not)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _format_number(value: object) -> str:
    """Ints as they are, other numbers (floats, 0-d tensors) to four significant digits."""
    if isinstance(value, int):
        return str(value)
    try:
        return f"{float(value):.4g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def _format_speed(rate: float | None) -> str:
    """``12.5 steps/s``, or ``3.20 s/step`` below one step per second; ``? steps/s`` before it is measured."""
    if rate is None:
        return "? steps/s"
    if rate < 1:
        return f"{1 / rate:.3g} s/step"
    return f"{rate:.2f} steps/s" if rate < 10 else f"{rate:.1f} steps/s" if rate < 100 else f"{rate:.0f} steps/s"


def _format_eta(seconds: float | None) -> str:
    """``1h02m``, ``4m18s`` or ``12s``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"
