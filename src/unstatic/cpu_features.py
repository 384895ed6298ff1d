"""What this CPU can do natively, where it changes what a user should choose.

bfloat16 is the case that matters: with AVX-512 BF16 or AMX (x86) or the BF16 extension (Arm), PyTorch's bf16
convolutions and matrix products run about twice as fast as float32; without them every bf16 operation is
converted to float32 and back, and runs several times *slower* than float32 (measured on a 2-core AMD EPYC with
AVX2 only: an SD 1.5-shaped U-Net step 7x slower, a training step 10x slower; benchmarks/README.md). So a model
loaded in bf16 on such a CPU computes in float32 on its bf16 weights (``networks/narrow_weights.py``), and a bf16
training run warns.
"""

from __future__ import annotations

import functools
import platform
import warnings

import torch

_X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_X86_FP16_FLAGS = ("avx512_fp16", "amx_fp16")


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), ``None`` where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def _native(x86_flags: tuple[str, ...], arm_flag: str) -> bool | None:
    flags = _cpu_flags()
    if flags is None:
        return None
    if platform.machine().lower() in ("aarch64", "arm64"):
        return arm_flag in flags
    return any(flag in flags for flag in x86_flags)


@functools.cache
def native_bf16() -> bool | None:
    """Whether the CPU computes bfloat16 natively; ``None`` when it cannot be told (not Linux)."""
    return _native(_X86_BF16_FLAGS, "bf16")


@functools.cache
def native_fp16() -> bool | None:
    """Whether the CPU computes float16 natively (AVX-512 FP16 or AMX-FP16; Arm's half-precision SIMD); ``None``
    when it cannot be told. Without it PyTorch's float16 convolutions are as slow as emulated bf16 ones."""
    return _native(_X86_FP16_FLAGS, "asimdhp")


def emulates(dtype: torch.dtype) -> bool:
    """Whether this CPU would emulate ``dtype`` arithmetic (bf16 or float16 without their instructions); False
    for other dtypes and when it cannot be told."""
    native = {torch.bfloat16: native_bf16, torch.float16: native_fp16}.get(dtype)
    return native is not None and native() is False


def warn_if_bf16_is_emulated(device: torch.device | str, what: str) -> bool:
    """Warn (and return True) when ``what`` is about to run in bf16 on a CPU without bf16 instructions."""
    if torch.device(device).type != "cpu" or not emulates(torch.bfloat16):
        return False
    warnings.warn(f"{what} runs in bf16, but this CPU has no bf16 instructions: PyTorch emulates them, several "
                  "times slower than float32 here. Use float32 (fp32) on this machine.", stacklevel=3)
    return True
