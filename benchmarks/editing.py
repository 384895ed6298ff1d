"""Editing with the bundled shapes model, scored by the shapes reader: how often does an edit do what it was told?

    .venv/bin/python -m benchmarks.editing [--model FOLDER] [--count 50]

For ``--count`` two-object scenes from a shapes-world seed training never used (rendered at the model's size):

* **remove**: inpaint the grid cell of the first object with a caption of the scene without it;
* **replace**: inpaint that cell with a caption in which the object has another shape and colour;
* **recolour**: img2img over the whole image (``--strength``) with a caption in which the object has another colour.

Then outpainting: ``--seam-count`` scenes extended by 16 px on the right (edge fill) with their own caption; prints
the seam energy across the old border relative to the rest of the image (about 1: the seam looks like the rest;
a hard edge scores well above 1), beside the same measure for the render with noise pasted on.

An edit succeeds when the reader finds exactly the edited scene: every object in its cell with the right shape
and colour, nothing else (the untouched object included). The "renders" row is the reader on perfect renders
of the edited scenes: the ceiling the reader allows. Prints matched/total with 95 % Wilson intervals.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time

import torch

from unstatic.data.shapes import DEFAULT_HOLDOUT, ShapesDataset, describe
from unstatic.data.shapes.random_scene import place
from unstatic.data.shapes.scene import Scene
from unstatic.data.shapes.vocabulary import COLOURS, GRID, SHAPES
from unstatic.evaluation.fidelity import matches, read_scenes, wilson_interval
from unstatic.evaluation.shapes_reader import default_reader_folder, load_reader, render_scenes
from unstatic.imaging import from_pil
from unstatic.models import bundled_model_folder, load_diffusion_model
from unstatic.pipelines.img2img import image_to_image
from unstatic.pipelines.inpaint import inpaint
from unstatic.pipelines.masks import rect_mask
from unstatic.pipelines.outpaint import outpaint, seam_energy

EDIT_SEED = 90_007  # a shapes-world seed no training config uses
TASKS = ("remove", "replace", "recolour")


def cell_rect(cell: tuple[int, int], resolution: int, margin: int = 1) -> tuple[int, int, int, int]:
    """The pixel box ``(x0, y0, x1, y1)`` of a grid cell, grown by ``margin`` px (objects stay inside their cell)."""
    row, col = cell
    side = resolution / GRID
    return (max(round(col * side) - margin, 0), max(round(row * side) - margin, 0),
            min(round((col + 1) * side) + margin, resolution), min(round((row + 1) * side) + margin, resolution))


def edited_scene(task: str, scene: Scene, rng: random.Random) -> Scene:
    """The scene the edit asks for: the first object removed, replaced (another shape and colour), or recoloured."""
    first, rest = scene.objects[0], scene.objects[1:]
    if task == "remove":
        return Scene(scene.background, rest)
    taken = {(o.colour, o.shape) for o in rest} | {(first.colour, first.shape)}
    colour = rng.choice([c for c in COLOURS if c != first.colour and c not in scene.background.colours])
    if task == "recolour":
        return Scene(scene.background, (dataclasses.replace(first, colour=colour), *rest))
    shape = rng.choice([s for s in SHAPES if s != first.shape and (colour, s) not in taken
                        and f"{colour} {s}" not in DEFAULT_HOLDOUT])  # held-out pairs stay out of this test
    return Scene(scene.background, (place(rng, shape, colour, first.cell), *rest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder (default: the bundled model)")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--strength", type=float, default=0.7, help="img2img strength of the recolour edit")
    parser.add_argument("--mask-blur", type=float, default=1.0)
    parser.add_argument("--seam-count", type=int, default=12, help="scenes for the outpainting seam check (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_diffusion_model(args.model or bundled_model_folder())
    reader = load_reader(default_reader_folder(32))
    size = model.spec.image_size
    world = ShapesDataset(length=10**9, seed=EDIT_SEED, min_objects=2, max_objects=2, label=None)
    options = dict(num_inference_steps=args.steps, guidance_scale=args.guidance)
    rows = {task: ([], []) for task in TASKS}  # edited images, target scenes
    started = time.perf_counter()
    for i in range(args.count):
        scene = world.scene(i)
        original = render_scenes([scene], size)[0]
        rng = random.Random(f"benchmarks.editing/{i}")
        for task in TASKS:
            target = edited_scene(task, scene, rng)
            prompt = describe(target, rng).text
            if task == "recolour":
                result = image_to_image(model, original, prompt, strength=args.strength, seed=i, **options)
            else:
                mask = rect_mask([cell_rect(scene.objects[0].cell, size)], size, size)
                result = inpaint(model, original, mask, prompt, mask_blur=args.mask_blur, seed=i, **options)
            rows[task][0].append(from_pil(result[0].image))
            rows[task][1].append(target)
    seconds = (time.perf_counter() - started) / (args.count * len(TASKS))
    print(f"\n{args.model or 'bundled model'}: {args.count} scenes per edit, {args.steps} steps, guidance "
          f"{args.guidance}, recolour strength {args.strength}; {seconds:.2f} s per edit")
    print(f"{'edit':10s} {'model':>10s} {'fraction':>9s}  {'95% interval':16s} {'renders':>8s}")
    for task, (images, targets) in rows.items():
        hits = sum(matches(r, t) for r, t in zip(read_scenes(reader, torch.stack(images)), targets))
        ceiling = sum(matches(r, t) for r, t in zip(read_scenes(reader, render_scenes(targets, size)), targets))
        low, high = wilson_interval(hits, len(targets))
        print(f"{task:10s} {hits:5d}/{len(targets):<4d} {hits / len(targets):9.1%}  [{low:.1%}, {high:.1%}]"
              f"{ceiling / len(targets):>10.1%}")
    if args.seam_count:
        seams(model, world, args.seam_count, size, options)


def seams(model, world: ShapesDataset, count: int, size: int, options: dict) -> None:
    """Outpaint ``count`` scenes 16 px to the right; print the seam energy beside a hard edge's."""
    ours, pasted = [], []
    for i in range(count):
        image = render_scenes([world.scene(i)], size)[0]
        out = outpaint(model, image, world.describe(i).text, right=16, fill="edge", seed=i, **options)[0].image
        ours.append(seam_energy(from_pil(out), (0, 0, size, size)))
        noise = torch.rand(3, size, 16, generator=torch.Generator().manual_seed(i)) * 2 - 1
        pasted.append(seam_energy(torch.cat([image, noise], dim=2), (0, 0, size, size)))
    print(f"\noutpaint 16 px right, {count} scenes: seam energy median {statistics.median(ours):.2f} "
          f"(min {min(ours):.2f}, max {max(ours):.2f}); noise pasted on: median {statistics.median(pasted):.2f}")


if __name__ == "__main__":
    main()
