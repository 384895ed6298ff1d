"""Distribution distance and diversity in the shapes reader's feature space.

* :func:`frechet_distance`: the Fréchet (2-Wasserstein) distance between Gaussian fits of two feature sets,
  FID's formula (Heusel et al. 2017, Eq. 6; Dowson & Landau 1982) with the reader in place of Inception.
* :func:`real_floor`: the same distance between two independent sets of renders, the value a perfect
  generator would get at that sample size (the estimator is biased upwards for finite samples).
* :func:`diversity`: how varied a generator's images for one prompt are, relative to renders of scenes that
  prompt describes equally well.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from unstatic.data.shapes import ShapesDataset
from unstatic.data.shapes.phrasing import STYLES
from unstatic.data.shapes.random_scene import place, random_background
from unstatic.data.shapes.captions import Caption
from unstatic.data.shapes.scene import Scene, cell_relation
from unstatic.data.shapes.vocabulary import BACKGROUNDS, GRID
from unstatic.evaluation.shapes_reader import ShapesReader, match_resolution, render_scenes

SIZE_WORDS = frozenset(w for style in STYLES.values() for names in style.sizes.values() for n in names for w in n.split())
MAX_TRIES = 1000


@torch.no_grad()
def extract_features(reader: ShapesReader, images: Tensor, batch_size: int = 512) -> Tensor:
    """``reader.features`` of ``images`` ``[N, 3, S, S]`` in [-1, 1], batched: ``[N, feature_dim]``. S may be a
    multiple of the reader's resolution (area-downsampled first, see :func:`match_resolution`)."""
    reader.eval()
    images = match_resolution(images, reader.config.resolution)
    return torch.cat([reader.features(images[i : i + batch_size].float()) for i in range(0, len(images), batch_size)])


def gaussian_fit(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of ``features`` ``[N, D]``, N >= 2."""
    x = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix by eigen-decomposition (round-off negatives clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_from_moments(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """``|mu_a - mu_b|² + tr(C_a + C_b - 2 (C_a C_b)^½)`` (Heusel et al. 2017, Eq. 6; Dowson & Landau 1982).

    ``tr (C_a C_b)^½`` is computed stably as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix ``C_a^½ C_b C_a^½``, which has the same eigenvalues as ``C_a C_b`` (eig(AB) = eig(BA) with
    ``A = C_a^½``, ``B = C_a^½ C_b``); no non-symmetric ``sqrtm`` and no complex round-off."""
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mu_a), len(mu_a)):
        raise ValueError(f"moment shapes do not fit: {mu_a.shape}, {cov_a.shape}, {mu_b.shape}, {cov_b.shape}")
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    return max(value, 0.0)  # a true distance is >= 0; round-off can dip below for identical inputs


def frechet_distance(features_a: Tensor | np.ndarray, features_b: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets ``[N, D]`` and ``[M, D]``."""
    return frechet_from_moments(*gaussian_fit(features_a), *gaussian_fit(features_b))


def world_renders(count: int, seed: int, resolution: int) -> tuple[Tensor, list[Scene]]:
    """The first ``count`` train-split scenes (1-3 objects) of shapes world ``seed``, rendered, and the scenes."""
    world = ShapesDataset(resolution=resolution, length=count, seed=seed, label=None)
    scenes = [world.scene(i) for i in range(count)]
    return render_scenes(scenes, resolution), scenes


def real_floor(reader: ShapesReader, n: int, seed_a: int, seed_b: int) -> float:
    """Fréchet distance between ``n`` renders of world ``seed_a`` and ``n`` of world ``seed_b``: what a perfect
    generator scores with ``n`` samples. Report it beside any generator's distance at the same ``n``."""
    if seed_a == seed_b:
        raise ValueError(f"seed_a and seed_b must differ (both {seed_a}); the same seed gives the same images")
    r = reader.config.resolution
    return frechet_distance(extract_features(reader, world_renders(n, seed_a, r)[0]),
                            extract_features(reader, world_renders(n, seed_b, r)[0]))  # fmt: skip


def caption_words(caption: str) -> set[str]:
    """The lower-case words of a caption, punctuation (but not hyphens) removed."""
    return set(caption.lower().translate(str.maketrans("", "", string.punctuation.replace("-", ""))).split())


def caption_variants(caption: Caption, scene: Scene, count: int, rng: random.Random) -> list[Scene]:
    """``count`` scenes ``caption`` describes as well as ``scene``: colours and shapes kept; the cells of the
    objects it places kept; the other objects moved to random free cells such that every relation it states
    still holds; sizes and background kept only where it names them (a size word, a background colour name).
    What is unsaid, and the jitter inside each cell, is redrawn as the shapes world draws it."""
    words = caption_words(caption.text)
    keep_sizes = bool(words & SIZE_WORDS)
    keep_background = bool(words & set(BACKGROUNDS))
    n = len(scene.objects)
    variants = []
    for _ in range(count):
        for _ in range(MAX_TRIES):  # rejection: uniform over the cell layouts that keep every stated relation
            free = [divmod(k, GRID) for k in range(GRID * GRID) if divmod(k, GRID) not in
                    {scene.objects[i].cell for i in caption.placed}]  # fmt: skip
            drawn = iter(rng.sample(free, n))
            cells = [scene.objects[i].cell if i in caption.placed else next(drawn) for i in range(n)]
            if all(name in cell_relation(cells[i], cells[j]) for i, name, j in caption.claims):
                break
        background = scene.background if keep_background else random_background(rng, [o.colour for o in scene.objects])
        objects = []
        for obj, cell in zip(scene.objects, cells):
            for _ in range(MAX_TRIES):  # rejection keeps place()'s jitter distribution for a fixed size
                new = place(rng, obj.shape, obj.colour, cell)
                if not keep_sizes or new.size == obj.size:
                    break
            objects.append(new)
        variants.append(Scene(background, tuple(objects)))
    return variants


def mean_pairwise_distance(features: Tensor) -> float:
    """Mean Euclidean distance over all unordered pairs of rows of ``features`` ``[S, D]``, S >= 2."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features [S, D] with S >= 2, got shape {tuple(features.shape)}")
    s = len(features)
    return (torch.cdist(features.double(), features.double()).sum() / (s * (s - 1))).item()


def diversity(
    reader: ShapesReader, generated: Tensor, prompts: Sequence[tuple[Caption, Scene]], seed: int = 0,
) -> dict[str, float]:
    """Diversity across seeds: ``generated`` ``[P, S, 3, R, R]`` holds S images per prompt (different seeds).

    ``generated`` is the mean pairwise feature distance among one prompt's images, averaged over prompts;
    ``reference`` is the same statistic on renders of S :func:`caption_variants` of each prompt's scene, i.e.
    the spread of the data a caption stands for; ``ratio = generated / reference``. About 1 means the generator
    varies what the caption leaves open as much as the data does; far below 1 means it collapses to one
    picture per prompt (a ratio above 1 can also mean it ignores what the caption pins down)."""
    if generated.ndim != 5 or len(generated) != len(prompts) or generated.shape[1] < 2:
        raise ValueError(f"generated must be [P, S>=2, 3, R, R] with P = len(prompts) = {len(prompts)}, "
                         f"got shape {tuple(generated.shape)}")  # fmt: skip
    p, s = generated.shape[:2]
    rng = random.Random(f"unstatic.evaluation.diversity/{seed}")
    variants = [v for caption, scene in prompts for v in caption_variants(caption, scene, s, rng)]
    reference = extract_features(reader, render_scenes(variants, reader.config.resolution)).view(p, s, -1)
    produced = extract_features(reader, generated.flatten(0, 1)).view(p, s, -1)
    gen = float(np.mean([mean_pairwise_distance(f) for f in produced]))
    ref = float(np.mean([mean_pairwise_distance(f) for f in reference]))
    return {"generated": gen, "reference": ref, "ratio": gen / ref}
