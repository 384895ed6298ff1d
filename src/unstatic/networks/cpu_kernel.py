"""unstatic's C kernels (``attention_kernel.c``, ``group_norm_kernel.c``), built with this machine's C compiler at
first use into one library and cached.

The library is compiled once per machine, sources and compiler (``gcc -O3 -march=native -fopenmp``), into
``$UNSTATIC_CACHE/kernels`` (default ``~/.cache/unstatic/kernels``), written to a temporary name and renamed, so
concurrent first uses never load half a file. When there is no compiler, the build fails, or
``UNSTATIC_NATIVE_KERNELS=0`` is set, :func:`native_library` returns ``None`` and callers use PyTorch's
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

import torch

log = logging.getLogger(__name__)

SOURCES = tuple(Path(__file__).with_name(name) for name in ("attention_kernel.c", "group_norm_kernel.c"))
HEADERS = (Path(__file__).with_name("vector_math.h"),)
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


def _build(compiler: str, sources: tuple[Path, ...], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, *map(str, sources), "-o", tmp], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def native_library() -> ctypes.CDLL | None:
    """The C kernels (see each source for its layout), or ``None`` where they cannot be built."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        log.info("no C compiler found: attention and GroupNorm run on PyTorch's kernels")
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
        texts = [path.read_text() for path in SOURCES + HEADERS]
        key = hashlib.sha256("\0".join([*texts, " ".join(FLAGS), version, _cpu_identity()]).encode())
        target = cache_dir() / f"kernels-{key.hexdigest()[:16]}.so"
        if not target.exists():
            _build(compiler, SOURCES, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        log.warning("could not build the C kernels (%s): attention and GroupNorm run on PyTorch's kernels", detail)
        return None
    # the C signatures: pointers, then lengths, then the thread count
    lib.unstatic_attention.restype = ctypes.c_int
    lib.unstatic_attention.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_long] * 6 + [ctypes.c_int]
    lib.unstatic_attention_backward.restype = ctypes.c_int
    lib.unstatic_attention_backward.argtypes = [ctypes.c_void_p] * 10 + [ctypes.c_long] * 6 + [ctypes.c_int]
    lib.unstatic_group_norm.restype = ctypes.c_int
    lib.unstatic_group_norm.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_long] * 4 + [ctypes.c_float] + [ctypes.c_int] * 2
    lib.unstatic_group_norm_backward.restype = ctypes.c_int
    lib.unstatic_group_norm_backward.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_long] * 4 + [ctypes.c_int] * 2
    return lib


@torch.compiler.assume_constant_result  # torch.compile: a constant, not a ctypes object to trace
def kernels_available() -> bool:
    """Whether the C kernels are built and loaded (:func:`native_library` is not ``None``)."""
    return native_library() is not None
