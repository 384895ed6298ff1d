"""CPU attention: ``unstatic.networks.fast_attention.attention`` against ``F.scaled_dot_product_attention``.

One row per shape class that diffusion networks produce (U-Net self- and cross-attention at three levels,
VAE mid-block attention, DDPM CIFAR-10 attention). For each: median ms of SDPA and of ``attention`` in
float32 and bfloat16 (the two interleaved, in a fresh random order each round), the speed-up, and the max
relative error (max |out - ref| / max |ref|) against SDPA in float64 on the same inputs, for SDPA and ours.
If diffusers is installed, it then times a whole small SD-like conditional U-Net (32x32 latent, batch 2)
with diffusers' attention routed through SDPA and through ``attention``.

Run:  .venv/bin/python -m benchmarks.attention        (about 1 minute on an idle 2-core machine)
"""

from __future__ import annotations

import random
import statistics
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from unstatic.networks.fast_attention import attention

# name: (batch, heads, N queries, M keys, head_dim)
SHAPES = {
    "unet 32x32 self  d8": (2, 8, 1024, 1024, 8),
    "unet 32x32 cross d8": (2, 8, 1024, 77, 8),
    "unet 16x16 self d16": (2, 8, 256, 256, 16),
    "unet 16x16 cross d16": (2, 8, 256, 77, 16),
    "unet 8x8 self  d32": (2, 8, 64, 64, 32),
    "unet 8x8 cross d32": (2, 8, 64, 77, 32),
    "vae 128px d512": (1, 1, 256, 256, 512),
    "vae 512px d512": (1, 1, 4096, 4096, 512),
    "ddpm cifar d256": (2, 1, 256, 256, 256),
}


def median_ms(fns: dict, budget_s: float = 3.0, max_rounds: int = 61) -> dict:
    times = {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(max_rounds):
        order = list(fns)
        random.shuffle(order)
        for name in order:
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
        if r >= 4 and time.perf_counter() - start > budget_s:
            break
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).abs().max() / ref.abs().max())


def shape_table() -> dict:
    gen = torch.Generator().manual_seed(0)
    print(f"{'shape class':22s} {'B,H,N,M,d':>20s} | {'SDPA32':>7s} {'ours32':>7s} {'x':>5s} | "
          f"{'SDPAbf':>7s} {'oursbf':>7s} {'x':>5s} | {'err32 SDPA/ours':>17s} | {'errbf SDPA/ours':>17s}")
    results = {}
    for name, (b, h, n, m, d) in SHAPES.items():
        q, k, v = (torch.randn(b, h, s, d, generator=gen) for s in (n, m, m))
        row = {}
        for dt in (torch.float32, torch.bfloat16):
            qq, kk, vv = q.to(dt), k.to(dt), v.to(dt)
            ref = F.scaled_dot_product_attention(qq.double(), kk.double(), vv.double())
            errs = (rel_err(F.scaled_dot_product_attention(qq, kk, vv), ref), rel_err(attention(qq, kk, vv), ref))
            ms = median_ms({"sdpa": lambda: F.scaled_dot_product_attention(qq, kk, vv),
                            "ours": lambda: attention(qq, kk, vv)})
            row[dt] = (ms["sdpa"], ms["ours"], errs)
        (s32, o32, e32), (sbf, obf, ebf) = row[torch.float32], row[torch.bfloat16]
        results[(b, h, n, m, d)] = (s32, o32)
        print(f"{name:22s} {f'{b},{h},{n},{m},{d}':>20s} | {s32:7.2f} {o32:7.2f} {s32 / o32:5.2f} | "
              f"{sbf:7.2f} {obf:7.2f} {sbf / obf:5.2f} | {e32[0]:8.1e}/{e32[1]:8.1e} | {ebf[0]:8.1e}/{ebf[1]:8.1e}",
              flush=True)
    return results


def unet_saving() -> None:
    try:
        from diffusers import UNet2DConditionModel
        from diffusers.models import attention_processor
    except ImportError:
        print("\nU-Net: diffusers not installed")
        return
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(64, 128, 256),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8, cross_attention_dim=128).eval()
    x, t, ctx = torch.randn(2, 4, 32, 32), torch.tensor([999.0, 20.0]), torch.randn(2, 77, 128)
    calls = {}

    def routed(use_ours: bool, record: bool = False):
        def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
            if record:
                key = (*q.shape[:3], k.shape[2], q.shape[3])
                calls[key] = calls.get(key, 0) + 1
            if use_ours and attn_mask is None and dropout_p == 0.0 and not is_causal and not kw:
                return attention(q, k, v)
            return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, **kw)
        return SimpleNamespace(**{**{n: getattr(F, n) for n in dir(F) if not n.startswith("__")},
                                  "scaled_dot_product_attention": sdpa})

    real = attention_processor.F
    try:
        with torch.no_grad():
            attention_processor.F = routed(False, record=True)
            unet(x, t, ctx)
            modules = {name: routed(name == "ours") for name in ("sdpa", "ours")}

            def run(name):
                attention_processor.F = modules[name]
                return unet(x, t, ctx).sample

            err = rel_err(run("ours"), run("sdpa").double())
            ms = median_ms({name: (lambda name=name: run(name)) for name in modules}, budget_s=8.0)
    finally:
        attention_processor.F = real
    print("\nSmall SD-like conditional U-Net (64/128/256 channels, 8 heads, 32x32 latent, batch 2, 77 tokens):")
    print("  attention calls per forward (B,H,N,M,d: count):",
          ", ".join(f"{s}: {c}" for s, c in sorted(calls.items(), key=lambda i: -i[0][2])))
    print(f"  forward: SDPA {ms['sdpa']:.1f} ms, ours {ms['ours']:.1f} ms, saving {ms['sdpa'] - ms['ours']:.1f} ms "
          f"({100 * (1 - ms['ours'] / ms['sdpa']):.1f} %), output rel. err {err:.1e}")


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    random.seed(0)
    print("CPU attention, median ms (2 threads); err = max|out - ref| / max|ref| vs SDPA in float64\n")
    shape_table()
    unet_saving()


if __name__ == "__main__":
    main()
