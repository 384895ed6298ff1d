"""The C kernels as PyTorch operators: schema, fake (meta) implementations and autograd formulas checked by
``torch.library.opcheck``, and ``torch.compile`` tracing a U-Net's training step through them without a graph break."""

from __future__ import annotations

import pytest
import torch

from unstatic.networks import group_norm as group_norm_module
from unstatic.networks import native_attention as native_attention_module
from unstatic.networks.cpu_kernel import native_library

pytestmark = pytest.mark.skipif(native_library() is None, reason="no C compiler: the kernels are not built")


def test_attention_operator_passes_opcheck():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 6, generator=gen, requires_grad=True) for n in (37, 45, 45))  # padded n, m, d
    qs, kt, vt = native_attention_module._kernel_inputs(q, k, v)
    torch.library.opcheck(native_attention_module.attention_op, (qs, kt, vt, 45))


@pytest.mark.parametrize("silu", [False, True])
def test_group_norm_operator_passes_opcheck(silu):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 5, 3, generator=gen).to(memory_format=torch.channels_last).requires_grad_()
    weight, bias = (torch.randn(16, generator=gen, requires_grad=True) for _ in range(2))
    torch.library.opcheck(group_norm_module.group_norm_op, (x, weight, bias, 4, 1e-5, silu))


@pytest.mark.slow  # compiling takes about a minute on 2 cores
def test_compiled_unet_training_step_runs_the_kernels_without_graph_breaks():
    from unstatic.networks.unet import UNet, UNetConfig

    config = UNetConfig(  # channels a multiple of 8 (GroupNorm kernel), 2^17 query-key pairs at 16x16 (attention)
        in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        attention_head_dim=8, cross_attention_dim=None,
    )
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=gen).to(memory_format=torch.channels_last)
    t = torch.tensor([10.0, 700.0])
    torch.manual_seed(0)
    eager = UNet(config).train().to(memory_format=torch.channels_last)
    compiled = UNet(config).train().to(memory_format=torch.channels_last)
    compiled.load_state_dict(eager.state_dict())
    explanation = torch._dynamo.explain(compiled)(x, t)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    graph = explanation.graphs[0].code
    assert "unstatic.attention" in graph and "unstatic.group_norm" in graph
    eager(x, t).square().mean().backward()
    torch.compile(compiled)(x, t).square().mean().backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
