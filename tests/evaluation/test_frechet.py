"""Fréchet distance against closed forms, the real-vs-real floor, and diversity."""

import random

import numpy as np
import pytest
import torch

from unstatic.data.shapes import ShapesDataset
from unstatic.data.shapes.scene import relation
from unstatic.evaluation.frechet import (
    caption_variants,
    diversity,
    extract_features,
    frechet_distance,
    frechet_from_moments,
    mean_pairwise_distance,
    real_floor,
    world_renders,
)
from unstatic.evaluation.shapes_reader import default_reader_folder, load_reader, render_scenes


@pytest.fixture(scope="module")
def reader():
    return load_reader(default_reader_folder(32))


def samples_with_moments(mean, cov, n=500, seed=0):
    """Samples whose sample mean and (unbiased) covariance are exactly ``mean`` and ``cov``."""
    x = np.random.default_rng(seed).standard_normal((n, len(mean)))
    x -= x.mean(axis=0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # whiten: covariance exactly I
    return x @ np.linalg.cholesky(cov).T + mean


def test_identical_sets_have_zero_distance():
    x = np.random.default_rng(1).standard_normal((300, 8))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-8)


def test_symmetric_and_grows_with_mean_shift():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((400, 6)), rng.standard_normal((400, 6)) * 1.5
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    shifts = [frechet_distance(a, a + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts) and shifts[-1] > shifts[1] > 0
    # a pure shift adds exactly |shift|^2 (same covariance, so the trace terms cancel)
    assert shifts[2] == pytest.approx(6 * 1.0**2, rel=1e-9)


def test_closed_form_for_two_dimensional_gaussians():
    """In 2-D, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for PSD M (sqrt(l1) + sqrt(l2), squared), an
    independent formula for the cross term; the covariances do not commute."""
    mu_a, mu_b = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    cov_a, cov_b = np.array([[2.0, 0.6], [0.6, 1.0]]), np.array([[0.5, -0.3], [-0.3, 1.5]])
    product = cov_a @ cov_b
    cross = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    assert frechet_from_moments(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-10)
    fitted = frechet_distance(samples_with_moments(mu_a, cov_a), samples_with_moments(mu_b, cov_b, seed=1))
    assert fitted == pytest.approx(expected, rel=1e-8)


def test_diagonal_closed_form_and_scipy():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_from_moments(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expected)
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    m1, m2 = rng.standard_normal((10, 10)), rng.standard_normal((10, 10))
    c1, c2 = m1 @ m1.T, m2 @ m2.T
    reference = np.trace(c1) + np.trace(c2) - 2 * np.trace(linalg.sqrtm(c1 @ c2)).real
    assert frechet_from_moments(np.zeros(10), c1, np.zeros(10), c2) == pytest.approx(reference, rel=1e-6)


def test_bad_features_are_named():
    with pytest.raises(ValueError, match="features"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_real_floor_small_next_to_noise(reader):
    """At equal sample size (small here, so the floor carries the estimator's finite-sample bias), two sets of
    renders are much closer than renders and noise, and a larger sample lowers the floor."""
    floor = real_floor(reader, 300, seed_a=101, seed_b=202)
    renders, _ = world_renders(300, 303, 32)
    noise = torch.rand(300, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    to_noise = frechet_distance(extract_features(reader, renders), extract_features(reader, noise))
    assert floor < 0.4 * to_noise, (floor, to_noise)
    assert real_floor(reader, 100, seed_a=101, seed_b=202) > floor


def test_captions_record_the_positions_they_state():
    """``Caption.placed`` lists exactly the objects a position slot names; relations appear in ``claims``."""
    for style in ("train", "paraphrase"):
        world = ShapesDataset(length=400, seed=9, label=None, captions=style)
        for i in range(400):
            caption = world.describe(i)
            assert len(caption.placed) == caption.template.count("{p"), caption
            assert len(caption.claims) == caption.template.count("{r"), caption


def test_caption_variants_keep_what_is_said():
    world = ShapesDataset(length=60, seed=4, label=None)
    rng = random.Random(0)
    for i in range(60):
        scene, caption = world.scene(i), world.describe(i)
        for variant in caption_variants(caption, scene, 3, rng):
            assert [(o.shape, o.colour) for o in variant.objects] == [(o.shape, o.colour) for o in scene.objects]
            assert all(variant.objects[k].cell == scene.objects[k].cell for k in caption.placed)
            assert all(name in relation(variant.objects[i], variant.objects[j]) for i, name, j in caption.claims)
            if "{bg}" in caption.template:
                assert variant.background == scene.background


def test_diversity_of_data_is_about_one_and_of_copies_zero(reader):
    world = ShapesDataset(length=8, seed=12, label=None)
    prompts = [(world.describe(i), world.scene(i)) for i in range(8)]
    rng = random.Random(99)
    varied = torch.stack([render_scenes(caption_variants(c, s, 4, rng), 32) for c, s in prompts])
    result = diversity(reader, varied, prompts, seed=1)
    assert 0.6 < result["ratio"] < 1.6, result
    copies = varied[:, :1].expand(-1, 4, -1, -1, -1)
    assert diversity(reader, copies, prompts, seed=1)["generated"] == pytest.approx(0, abs=1e-6)


def test_mean_pairwise_distance_by_hand():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert mean_pairwise_distance(points) == pytest.approx((5 + 10 + 5) / 3)
