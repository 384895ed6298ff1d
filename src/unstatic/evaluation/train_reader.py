"""Training the shapes reader on the shapes world's ground truth.

    python -m unstatic.evaluation.train_reader --out src/unstatic/evaluation/weights/shapes_reader_32 \\
        --resolution 32 --steps 3000

The reader is a measuring instrument, not a generator, so it is trained on BOTH splits (train and holdout) and
on every object count (1-3): it must recognise held-out colour-shape combinations to score a generator on
them, and seeing them here leaks nothing into the generator, which never sees the reader's data or weights.
Validation uses scenes from a different world seed, so its images are fresh.

Augmentations make the reader robust to what generators leave behind, without changing any label: Gaussian
noise, a slight blur, a small per-channel colour jitter (a few 8-bit levels, far below the ~95 levels that
separate the palette's colours), and whole-image shifts of at most ``resolution / 32`` pixels (objects keep a
margin inside their cells, and a cell is ``resolution / 3`` wide, so no object changes cell).

Writes ``config.json`` + ``model.safetensors`` and ``training_log.jsonl`` (one JSON object per logged step,
then a final ``"validation"`` record with per-head accuracy) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from unstatic.data.shapes import ShapesDataset
from unstatic.data.shapes.render import render
from unstatic.evaluation.shapes_reader import IGNORE, ShapesReader, ShapesReaderConfig, load_reader, scene_targets
from unstatic.imaging import from_uint8
from unstatic.networks.weights import save_model
from unstatic.training.lr import learning_rate

LOG_NAME = "training_log.jsonl"
HOLDOUT_FRACTION = 0.25  # share of the pool drawn from the holdout split
CLEAN_FRACTION = 0.25  # share of each batch left unaugmented, so clean renders are read best of all
VALIDATION_SEED = 7_000_001  # a world seed never used for training


def scene_pool(count: int, seed: int, resolution: int) -> tuple[list, np.ndarray]:
    """``count`` scenes (both splits, 1-3 objects) and their renders as uint8 ``[N, R, R, 3]``."""
    n_holdout = round(count * HOLDOUT_FRACTION)
    splits = {"train": count - n_holdout, "holdout": n_holdout}
    scenes = []
    for split, n in splits.items():
        world = ShapesDataset(resolution=resolution, length=max(n, 1), seed=seed, split=split, label=None)
        scenes += [world.scene(i) for i in range(n)]
    images = np.stack([render(s, resolution) for s in scenes])
    return scenes, images


def _gaussian_kernels(sigma: Tensor) -> Tensor:
    """Normalised 3x3 Gaussian kernels ``[N, 3, 3]``, one per standard deviation (pixels) in ``sigma``."""
    d = torch.tensor([-1.0, 0.0, 1.0])
    k1 = torch.exp(-(d[None] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    return k1[:, :, None] * k1[:, None, :]


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Label-preserving corruptions of a batch ``[N, 3, R, R]`` in [-1, 1]; see the module docstring."""
    n, _, r, _ = x.shape
    shift = max(r // 32, 1)
    # shifts: replicate-pad, then crop each image at its own offset
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator).tolist()
    x = torch.stack([padded[i, :, dy : dy + r, dx : dx + r] for i, (dy, dx) in enumerate(offsets)])
    # slight blur on half the images (sigma 0.3-0.8 px); a depthwise conv, one kernel per image
    blur = torch.rand(n, generator=generator) < 0.5
    sigma = torch.where(blur, 0.3 + 0.5 * torch.rand(n, generator=generator), torch.full((n,), 0.05))
    kernels = _gaussian_kernels(sigma).repeat_interleave(3, dim=0)[:, None]  # [N*3, 1, 3, 3]
    x = F.conv2d(F.pad(x.reshape(1, n * 3, r, r), (1,) * 4, mode="replicate"), kernels, groups=n * 3).view(n, 3, r, r)
    # colour jitter: per-channel gain and offset of a few 8-bit levels (0.05 in [-1, 1] is ~6 levels)
    gain = 1 + 0.05 * (2 * torch.rand(n, 3, 1, 1, generator=generator) - 1)
    offset = 0.05 * (2 * torch.rand(n, 3, 1, 1, generator=generator) - 1)
    x = x * gain + offset
    # Gaussian noise, std up to 0.12 (~15 levels), then clamp as a generator's output would be
    std = 0.12 * torch.rand(n, 1, 1, 1, generator=generator)
    return (x + std * torch.randn(x.shape, generator=generator)).clamp_(-1, 1)


def reader_loss(logits: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Cross-entropy per head, averaged over cells; colour and size only on occupied cells."""
    return {
        name: F.cross_entropy(logits[name].flatten(0, 1), targets[name].flatten(), ignore_index=IGNORE)
        for name in ("shape", "colour", "size")
    }


@torch.no_grad()
def head_accuracy(reader: ShapesReader, images: Tensor, targets: dict[str, Tensor], batch: int = 500) -> dict[str, float]:
    """Accuracy of each head on ``images``: ``occupancy`` (empty or not, every cell), ``shape``, ``colour``,
    ``size`` (occupied cells), and ``scene`` (every cell's shape and every object's colour right)."""
    reader.eval()
    preds = {k: [] for k in ("shape", "colour", "size")}
    for start in range(0, len(images), batch):
        logits = reader(images[start : start + batch])
        for k in preds:
            preds[k].append(logits[k].argmax(-1))
    pred = {k: torch.cat(v) for k, v in preds.items()}
    occupied = targets["shape"] > 0
    colour_ok = (pred["colour"] == targets["colour"]) | ~occupied
    return {
        "occupancy": ((pred["shape"] > 0) == occupied).float().mean().item(),
        "shape": (pred["shape"] == targets["shape"])[occupied].float().mean().item(),
        "colour": (pred["colour"] == targets["colour"])[occupied].float().mean().item(),
        "size": (pred["size"] == targets["size"])[occupied].float().mean().item(),
        "scene": ((pred["shape"] == targets["shape"]) & colour_ok).all(dim=1).float().mean().item(),
    }


def validation_set(count: int, resolution: int, seed: int = VALIDATION_SEED) -> tuple[Tensor, dict[str, Tensor]]:
    """Fresh clean renders (both splits) and their targets, from a world seed training never uses."""
    scenes, images = scene_pool(count, seed, resolution)
    return from_uint8(images), scene_targets(scenes)


def train(args: argparse.Namespace) -> dict[str, float]:
    """Train a reader as ``args`` says, save it and its log into ``args.out``; returns validation accuracy."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / LOG_NAME).open("a" if args.init else "w")  # a continued run appends to its log

    def write(record: dict) -> None:
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(json.dumps(record), flush=True)

    begin = time.perf_counter()
    scenes, pool = scene_pool(args.pool, args.seed, args.resolution)
    targets = scene_targets(scenes)
    write({"event": "pool", "scenes": len(scenes), "seconds": round(time.perf_counter() - begin, 1), **vars(args)})

    if args.init:  # continue from a saved reader (a second schedule, e.g. longer training at a lower rate)
        reader = load_reader(args.init)
        if reader.config.resolution != args.resolution:
            raise ValueError(f"--init reader has resolution {reader.config.resolution}, not --resolution {args.resolution}")
    else:
        reader = ShapesReader(ShapesReaderConfig(resolution=args.resolution))
    optimiser = torch.optim.AdamW(reader.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    reader.train()
    for step in range(args.steps):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup, "cosine")  # warm-up, cosine to 0
        index = torch.randint(0, len(scenes), (args.batch_size,), generator=generator)
        x = from_uint8(pool[index.numpy()])
        dirty = round(args.batch_size * (1 - CLEAN_FRACTION))
        x[:dirty] = augment(x[:dirty], generator)
        losses = reader_loss(reader(x), {k: v[index] for k, v in targets.items()})
        loss = sum(losses.values())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            write({"step": step, "lr": group["lr"], "loss": loss.item(), **{k: v.item() for k, v in losses.items()},
                   "seconds": round(time.perf_counter() - begin, 1)})  # fmt: skip
    save_model(reader.eval(), out)

    images, val_targets = validation_set(args.val_count, args.resolution)
    accuracy = head_accuracy(reader, images, val_targets)
    write({"event": "validation", "seed": VALIDATION_SEED, "images": len(images), "clean": accuracy,
           "seconds": round(time.perf_counter() - begin, 1)})  # fmt: skip
    log.close()
    return accuracy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the committed 32x32 reader's."""
    parser = argparse.ArgumentParser(description="Train the shapes reader (the evaluator's network).")
    parser.add_argument("--out", required=True, help="folder for config.json, model.safetensors, training_log.jsonl")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--pool", type=int, default=60_000, help="pre-rendered scenes to draw batches from")
    parser.add_argument("--val-count", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0, help="world seed of the training pool (and of the RNGs)")
    parser.add_argument("--init", default=None, help="folder of a saved reader to continue training from")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "pool", "val_count", "threads", "log_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


if __name__ == "__main__":
    train(parse_args())
