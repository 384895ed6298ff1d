"""Loaders for the reference libraries used by parity tests and benchmarks (never by the package).

k-diffusion's package imports torchvision at module level, which has no CPU build here; its sampling
code does not use it, so we register empty stand-ins before importing ``k_diffusion.sampling``.
"""

from __future__ import annotations

import importlib
import sys
import types


def load_k_diffusion_sampling():
    """``k_diffusion.sampling``, or None when k-diffusion (or its deps torchsde/scipy) is not installed."""
    try:
        importlib.import_module("torchsde")
        importlib.import_module("scipy.integrate")
    except ImportError:
        return None
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
    for name in ("clip", "kornia", "jsonmerge", "clean_fid", "cleanfid", "wandb", "skimage"):
        sys.modules.setdefault(name, types.ModuleType(name))
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError:
        return None


def load_diffusers_schedulers():
    """``diffusers.schedulers``, or None when diffusers is not installed."""
    try:
        return importlib.import_module("diffusers.schedulers")
    except ImportError:
        return None
