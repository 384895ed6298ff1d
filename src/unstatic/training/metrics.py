"""The training metrics log: one JSON object per line, safe to read while it is written and across resumes.

Format (JSON Lines): ``{"step": 120, "time": 1718000000.25, "loss": 0.0831, ...}\\n`` per record, with
``time`` in Unix seconds. JSON has no NaN or infinity, so **non-finite values are written as ``null``**
(valid JSON every parser, ``jq`` and pandas read as missing); :func:`read_metrics` turns them back into
``float("nan")`` so records stay numeric. Each line is flushed as it is written, so a crash loses at most
the line being written, and readers skip that truncated last line.
"""

from __future__ import annotations

import json
import math
import operator
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

_RESERVED_KEYS = ("step", "time")


class MetricsLog:
    """Appends metric records to a JSONL file; ``resume_step`` continues a run from a checkpoint.

    A fresh run (``resume_step=None``) starts an empty log, replacing any file at ``path``. A resumed
    run keeps the records with ``step <= resume_step`` (written before the checkpoint was saved) and drops
    later ones: they came from steps after the checkpoint, which the resumed run will redo, so keeping
    them would log those steps twice. The trimmed log is rewritten atomically (temp file, then
    ``os.replace``), so a crash during the rewrite leaves the old log whole.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"metrics log directory {str(self.path.parent)!r} does not exist")
        if resume_step is None:
            self._file = self.path.open("w", encoding="utf-8")
            return
        resume_step = _check_step(resume_step, "resume_step")
        if self.path.exists():
            kept = [line for line, record in _parse_lines(self.path) if record["step"] <= resume_step]
            write_atomically(self.path, "".join(line + "\n" for line in kept).encode("utf-8"))
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, step: int, **values: float) -> None:
        """Append ``{"step": step, "time": now, **values}`` as one line and flush it.

        Values may be anything ``float()`` accepts (Python or NumPy numbers, 0-d tensors); ints stay ints.
        """
        if self._file.closed:
            raise ValueError(f"metrics log {str(self.path)!r} is closed")
        step = _check_step(step, "step")
        record: dict[str, Any] = {"step": step, "time": time.time()}
        for name, value in values.items():
            if name in _RESERVED_KEYS:
                raise ValueError(f"metric name {name!r} is reserved for the record's own {name}")
            record[name] = _json_number(name, value)
        # allow_nan=False: a bare NaN slipping through would make the line invalid JSON.
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file; further writes raise ValueError. Closing twice is harmless."""
        self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records in a metrics log, in file order; ``null`` values come back as ``float("nan")``.

    A last line that is not valid JSON (the process died mid-write) is skipped silently; an invalid line
    anywhere else means the file is not a metrics log, and raises ValueError naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics log {str(path)!r} does not exist")
    return [
        {name: math.nan if value is None else value for name, value in record.items()}
        for _, record in _parse_lines(path)
    ]


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the new one, never a partial one.

    The bytes go to a temporary file in the same directory (``os.replace`` is atomic only within one file
    system), are flushed to disk, and the temporary file is then renamed over ``path``. The file gets the
    permissions a plain ``open`` would give it (``mkstemp`` makes it private to its owner).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


class DebiasedEma:
    """Exponential moving average with Adam's bias correction, fed one value at a time.

    Kingma & Ba 2015, "Adam", Algorithm 1: ``m_t = beta * m_{t-1} + (1 - beta) * x_t`` and
    ``m_hat_t = m_t / (1 - beta^t)``. Without the correction the average starts near 0 and takes
    ~``1 / (1 - beta)`` values to warm up; with it the first value is reported as is. (TensorBoard's
    scalar smoothing is the same formula.) Non-finite values are skipped, so one NaN loss does not
    poison every later average.
    """

    def __init__(self, smoothing: float) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = float(smoothing)
        self._biased = 0.0
        self._count = 0

    def update(self, value: float) -> float:
        """Add ``value`` (skipped if non-finite) and return the current average (NaN before any value)."""
        if math.isfinite(value):
            self._biased = self.smoothing * self._biased + (1.0 - self.smoothing) * value
            self._count += 1
        return self.value

    @property
    def value(self) -> float:
        """The bias-corrected average so far, or NaN if no finite value has arrived."""
        if self._count == 0:
            return math.nan
        return self._biased / (1.0 - self.smoothing**self._count)


def _check_step(step: int, name: str) -> int:
    """A non-negative Python int from any integer type, or a ValueError naming the argument."""
    if isinstance(step, bool):
        raise ValueError(f"{name} must be a non-negative int, got {step!r}")
    try:
        step = operator.index(step)
    except TypeError:
        raise ValueError(f"{name} must be a non-negative int, got {step!r}") from None
    if step < 0:
        raise ValueError(f"{name} must be a non-negative int, got {step}")
    return step


def _json_number(name: str, value: Any) -> int | float | None:
    """``value`` as a JSON-safe number: ints kept, everything else through ``float()``, non-finite as None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r} must be a number, got {type(value).__name__}: {value!r}") from None
    return number if math.isfinite(number) else None


def _parse_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(line, record)`` for each record line of a metrics log, skipping blank lines and a torn last line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            valid = isinstance(record, dict) and isinstance(record.get("step"), int)
        except json.JSONDecodeError:
            valid = False
        if valid:
            yield line, record
        elif number == len(lines):
            return  # torn: the writer died (or is still) mid-line; a resume rewrites the log without it
        else:
            raise ValueError(f"{str(path)!r} line {number} is not a metrics record: {line[:80]!r}")
