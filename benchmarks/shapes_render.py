"""Throughput of the shapes world on one core: images per second per resolution.

Two rows per resolution: "render" times ``render(scene, R)`` alone on pre-drawn scenes; "item" times
``ShapesDataset.__getitem__`` (draw the scene, render, caption, convert to a [-1, 1] tensor), which is what a
DataLoader worker pays. Each figure is the median over repeats of a timed batch of distinct indices; the
project's targets (>= 2000 images/s at 32x32 and >= 300 at 128x128, one core) apply to "render".

Run:  .venv/bin/python -m benchmarks.shapes_render          (about 20 s)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from unstatic.data.shapes import ShapesDataset, render

TARGETS = {32: 2000.0, 128: 300.0}


def images_per_second(work, count: int, repeats: int) -> float:
    """Median over ``repeats`` of ``count / seconds`` for one call of ``work()`` doing ``count`` images."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="images per timed batch")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core, as one DataLoader worker has

    print(f"{'resolution':>10} {'what':>7} {'images/s':>10} {'ms/image':>9}  target")
    for resolution in (32, 64, 128):
        dataset = ShapesDataset(resolution=resolution, length=args.count)
        scenes = [dataset.scene(i) for i in range(args.count)]
        rows = {
            "render": lambda: [render(scene, resolution) for scene in scenes],
            "item": lambda: [dataset[i] for i in range(args.count)],
        }
        for what, work in rows.items():
            rate = images_per_second(work, args.count, args.repeats)
            target = TARGETS.get(resolution) if what == "render" else None
            verdict = "" if target is None else f"{'PASS' if rate >= target else 'FAIL'} (>= {target:.0f})"
            print(f"{resolution:>10} {what:>7} {rate:>10.0f} {1000 / rate:>9.3f}  {verdict}")


if __name__ == "__main__":
    main()
