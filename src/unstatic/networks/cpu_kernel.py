"""unstatic's C kernels (``attention_kernel.c``), built with this machine's C compiler at first use and cached.

The library is compiled once per machine, source and compiler (``gcc -O3 -march=native -fopenmp``), into
``$UNSTATIC_CACHE/kernels`` (default ``~/.cache/unstatic/kernels``), written to a temporary name and renamed, so
concurrent first uses never load half a file. When there is no compiler, the build fails, or
``UNSTATIC_NATIVE_KERNELS=0`` is set, :func:`attention_library` returns ``None`` and callers use PyTorch's
kernels: the results agree to float32 rounding either way, only the speed differs.

The library links the OpenMP runtime by its soname (``libgomp.so.1``), which PyTorch has already loaded, so both
share one thread pool rather than competing with two.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("attention_kernel.c")
FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC", "-std=gnu11")
DISABLE_VARIABLE = "UNSTATIC_NATIVE_KERNELS"  # "0" turns the C kernels off


def cache_dir() -> Path:
    root = os.environ.get("UNSTATIC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "unstatic")
    return Path(root) / "kernels"


def _cpu_identity() -> str:
    """What -march=native depends on: a home directory shared between machines must not share their builds."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _build(compiler: str, source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, str(source), "-o", tmp], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def attention_library() -> ctypes.CDLL | None:
    """The attention kernel (see ``attention_kernel.c`` for its layout), or ``None`` where it cannot be built."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        log.info("no C compiler found: attention runs on PyTorch's kernels")
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
        key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(FLAGS), version, _cpu_identity()]).encode())
        target = cache_dir() / f"attention-{key.hexdigest()[:16]}.so"
        if not target.exists():
            _build(compiler, SOURCE, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        log.warning("could not build the C attention kernel (%s): attention runs on PyTorch's kernels", detail)
        return None
    # the C signatures: pointers, then lengths, then the thread count
    lib.unstatic_attention.restype = ctypes.c_int
    lib.unstatic_attention.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_long] * 6 + [ctypes.c_int]
    lib.unstatic_attention_backward.restype = ctypes.c_int
    lib.unstatic_attention_backward.argtypes = [ctypes.c_void_p] * 10 + [ctypes.c_long] * 6 + [ctypes.c_int]
    return lib
