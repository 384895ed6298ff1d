"""Shared by the network parity tests."""

import torch


def perturb_parameters(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Noise on every parameter, so layers a reference initialises to zero cannot hide a wiring mistake."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model.eval()


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """``max |ours - reference| / max |reference|``."""
    return float((ours - reference).abs().max() / reference.abs().max())
