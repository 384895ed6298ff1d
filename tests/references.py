"""Loaders for the reference libraries used by parity tests and benchmarks (never by the package).

k-diffusion's package ``__init__`` imports its whole training stack (torchvision, kornia, scikit-image,
...). Its samplers need none of that, so we load ``k_diffusion.sampling`` through a bare package
module, with empty stand-ins for the torchvision modules ``k_diffusion.utils`` imports at module level;
the stand-ins are removed again so other libraries do not mistake them for torchvision.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_TORCHVISION = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def load_k_diffusion_sampling():
    """``k_diffusion.sampling``, or None when k-diffusion (or its deps torchsde/scipy) is not installed."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or importlib.util.find_spec("torchsde") is None or importlib.util.find_spec("scipy") is None:
        return None
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    stubs = [name for name in _TORCHVISION if name not in sys.modules]
    for name in stubs:
        sys.modules[name] = types.ModuleType(name)
    try:
        return importlib.import_module("k_diffusion.sampling")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def load_diffusers_schedulers():
    """``diffusers.schedulers``, or None when diffusers is not installed."""
    if importlib.util.find_spec("diffusers") is None:
        return None
    return importlib.import_module("diffusers.schedulers")
