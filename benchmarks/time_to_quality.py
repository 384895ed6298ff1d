"""Time to quality: train small models for a fixed wall-clock budget on this CPU and report what they reach.

    python -m benchmarks.time_to_quality --minutes 10 --out runs/ttq

Trains (1) an unconditional model on scikit-learn's digits and (2) a class-conditional model on the shapes
world (one object, class = shape), both at 32x32 with the configs in ``configs/``, each for ``--minutes`` of
wall-clock time. Prints steps, images seen, throughput and the loss at the start and end (mean of the first and
last 10% of logged steps); the loss curves (``loss.png``) and sample grids (``samples/latest.png``) are in each
run's folder. A second invocation with the same ``--out`` resumes the runs instead of starting over.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch

from unstatic.training.config import load_config
from unstatic.training.metrics import read_metrics
from unstatic.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
RUNS = {"digits (unconditional)": "digits.toml", "shapes (class = shape)": "shapes-class.toml"}


def summarise(folder: Path) -> dict:
    records = read_metrics(folder / "metrics.jsonl")
    tenth = max(1, len(records) // 10)
    return {
        "first": statistics.mean(r["loss"] for r in records[:tenth]),
        "last": statistics.mean(r["loss"] for r in records[-tenth:]),
        "images_per_s": statistics.median(r["images_per_s"] for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("runs/time_to_quality"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, config_file in RUNS.items():
        folder = args.out / Path(config_file).stem
        config = load_config(REPO / "configs" / config_file, [f"time_limit_minutes={args.minutes}", "steps=100000"])
        config = dataclasses.replace(config, output_dir=str(folder))
        result = train(config)
        rows.append((name, result.step, result.step * config.batch_size, summarise(folder), folder))
    print(f"\n{args.minutes:g} minutes each, {args.threads} threads, batch 32, 32x32")
    print(f"{'run':26s} {'steps':>6s} {'images':>8s} {'img/s':>6s} {'loss start':>10s} {'loss end':>9s}  outputs")
    for name, steps, images, stats, folder in rows:
        print(f"{name:26s} {steps:6d} {images:8d} {stats['images_per_s']:6.1f} {stats['first']:10.4f} "
              f"{stats['last']:9.4f}  {folder}/loss.png, {folder}/samples/latest.png")


if __name__ == "__main__":
    main()
