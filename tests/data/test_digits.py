"""DigitsDataset: scikit-learn's 8x8 handwritten digits, upsampled and class-conditional."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")

from unstatic.data import digits  # noqa: E402
from unstatic.data.digits import DIGIT_NAMES, DigitsDataset  # noqa: E402


def _original_ink() -> np.ndarray:
    """The raw 8x8 images, read straight from scikit-learn (not through the module's cache)."""
    from sklearn.datasets import load_digits

    return load_digits().images


def test_all_split_has_every_image_with_labels_and_captions():
    dataset = DigitsDataset(resolution=16)
    assert len(dataset) == 1797 and dataset.num_classes == 10 and len(dataset.class_names) == 10
    labels = [dataset[i]["label"] for i in range(0, len(dataset), 7)]
    assert min(labels) == 0 and max(labels) == 9 and all(isinstance(label, int) for label in labels)
    item = dataset[0]
    assert item["caption"] == f"a handwritten digit {DIGIT_NAMES[item['label']]}"
    assert item["caption"].split()[-1] == dataset.class_names[item["label"]]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 16, 16)
    assert dataset.images.min() >= -1 and dataset.images.max() <= 1


def test_train_and_test_splits_are_disjoint_cover_everything_and_hold_every_digit():
    train, test = DigitsDataset(resolution=8, split="train"), DigitsDataset(resolution=8, split="test")
    assert len(train) + len(test) == 1797
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    assert abs(len(test) - 0.1 * 1797) <= 10
    assert sorted(set(test.labels.tolist())) == list(range(10))
    again = DigitsDataset(resolution=8, split="test")
    assert np.array_equal(again.indices, test.indices)  # fixed, not drawn afresh
    assert not np.array_equal(DigitsDataset(resolution=8, split="test", seed=1).indices, test.indices)


def test_upsampled_digit_is_white_on_black_and_matches_the_original_8x8():
    resolution = 32
    dataset = DigitsDataset(resolution=resolution)
    ink = torch.from_numpy(_original_ink()).float()  # 0..16, ink high
    # Averaging each 4x4 block undoes the upsampling up to the interpolation's smoothing.
    back = F.avg_pool2d(dataset.images, resolution // 8)[:, 0]
    for index in (0, 100, 1000, 1796):
        correlation = np.corrcoef(back[index].flatten(), ink[index].flatten())[0, 1]
        assert correlation > 0.95, index
    # White digit on black: ink-free pixels come out near -1, full ink near +1.
    empty, full = ink == 0, ink == 16
    assert back[empty].mean() < -0.8 and back[full].mean() > 0.6
    # Smooth, not nearest-neighbour: many more grey levels than the 17 ink counts.
    assert dataset.images[0].unique().numel() > 100


def test_three_channels_repeat_the_grey_image():
    grey, rgb = DigitsDataset(resolution=12), DigitsDataset(resolution=12, channels=3)
    item = rgb[5]["image"]
    assert item.shape == (3, 12, 12)
    assert all(torch.equal(item[c], grey[5]["image"][0]) for c in range(3))


@pytest.mark.parametrize("kwargs, field", [({"split": "validation"}, "split"), ({"channels": 2}, "channels"),
                                           ({"resolution": 0}, "resolution"), ({"seed": -1}, "seed")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DigitsDataset(**kwargs)


def test_missing_scikit_learn_says_how_to_install_it(monkeypatch):
    digits.load_digit_arrays.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes `import sklearn.datasets` fail
    try:
        with pytest.raises(ImportError, match=r"pip install 'unstatic\[digits\]'"):
            DigitsDataset()
    finally:
        digits.load_digit_arrays.cache_clear()  # forget the failure; the next use reloads
