"""Channels-last weights for the convolutional networks, with plain NCHW state dicts.

The U-Net and the VAE run their activations channels-last (NHWC): oneDNN's convolutions, PyTorch's GroupNorm
and the transformer's ``[B, H*W, C]`` token views all prefer it. Their conv weights are kept in the same layout,
because with NCHW weights oneDNN copies every kernel to channels-last on every call (measured: ~8 ms of the
~200 ms small conditional U-Net forward at batch 2 on this 2-core CPU) and the backward pass copies every weight
gradient back. State dicts still hand out plain contiguous tensors, so saving them with safetensors (which
refuses strided tensors) and comparing them with other models' keeps working.

The activations follow the weights (:func:`activation_format`), so ``model.to(memory_format=torch.contiguous_format)``
switches a network back to NCHW throughout. Measured side by side with diffusers (NCHW) and with our NCHW
version, medians of interleaved runs on a shared 2-core AVX-512 CPU: inference fp32 CIFAR-10 U-Net b1 1.18x vs
0.99x, VAE encode/decode 1.08x/1.11x vs 1.01x/1.00x, small conditional U-Net b2 a tie (1.12x vs 1.16x, within
noise). Training picks its layout with :func:`training_format`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unstatic.networks.cpu_kernel import kernels_available

NETWORK_MEMORY_FORMAT = torch.channels_last


def use_channels_last(module: nn.Module) -> nn.Module:
    """Put ``module``'s 4-D weights in channels-last layout and make its ``state_dict`` return them contiguous."""
    module.to(memory_format=NETWORK_MEMORY_FORMAT)
    if not getattr(module, "_plain_state_dict_hook", False):
        module.register_state_dict_post_hook(_contiguous_state_dict)
        module._plain_state_dict_hook = True
    return module


def _contiguous_state_dict(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key, value in list(state_dict.items()):
        # keep_vars=True asks for the Parameters themselves: leave those alone
        if key.startswith(prefix) and isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
            if not value.is_contiguous():
                state_dict[key] = value.contiguous()


def activation_format(weight: torch.Tensor) -> torch.memory_format:
    """The layout to run activations in for a network whose conv weights look like ``weight``: mixing layouts
    makes oneDNN convert one side on every call."""
    return torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def training_format(device: torch.device, bf16: bool) -> torch.memory_format:
    """The layout to train a U-Net or VAE in: channels-last for float32 on a CPU where our GroupNorm kernel is
    built, NCHW otherwise.

    Measured side by side with diffusers (benchmarks/training_step.py, fp32, 2-core AVX2 CPU, median of three
    runs): channels-last 1.31x vs NCHW 1.24x of diffusers' images/s with the kernel. Channels-last oneDNN
    convolutions are faster forward and backward, but PyTorch's own GroupNorm backward is ~13x slower on
    channels-last maps, so without the kernel, and under bf16 autocast (its GroupNorm inputs are bf16, which the
    kernel does not take), NCHW wins: a bf16 step was 0.69x channels-last vs 1.01x NCHW without attention (0.81x
    vs 0.95x with it)."""
    if device.type == "cpu" and not bf16 and kernels_available():
        return torch.channels_last
    return torch.contiguous_format
