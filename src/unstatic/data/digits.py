"""scikit-learn's 8x8 handwritten digits, upsampled: a small, real, class-conditional data set that ships offline.

The 1,797 images (UCI "Optical Recognition of Handwritten Digits", bundled with scikit-learn) hold ink counts
0-16 on an 8x8 grid. Here they become white digits on black in [-1, 1], smoothly upsampled to the requested
resolution, each with its label and a caption such as "a handwritten digit seven".
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.1
_MAX_INK = 16.0  # load_digits counts the ink in 4x4 blocks of a 32x32 bitmap: 0..16


@functools.cache
def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: float32 ``[1797, 8, 8]`` ink counts 0..16 and int64 ``[1797]`` labels 0..9.

    Read once per process and kept (the array is ~460 KB), since every dataset instance shares it.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits dataset needs scikit-learn: pip install 'unstatic[digits]'") from None
    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False  # the cached copy is shared: keep it intact
    return images, labels


def split_indices(labels: np.ndarray, split: str, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``split``: a stratified 90/10 train/test split, fixed for a given ``seed``.

    Each class gives ``round(10%)`` of its images, chosen by a permutation seeded from ``(seed, class)``, to
    the test split, so the test set has every digit in proportion and the two splits never overlap.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return np.arange(len(labels))
    test = []
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        chosen = np.random.default_rng([seed, int(digit)]).permutation(members)
        test.append(chosen[: round(TEST_FRACTION * len(members))])
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[np.concatenate(test)] = True
    return np.flatnonzero(in_test if split == "test" else ~in_test)


class DigitsDataset(Dataset):
    """The 8x8 handwritten digits as ``{"image", "label", "caption"}`` items, upsampled to ``resolution``.

    ``image`` is float32 ``[channels, resolution, resolution]`` in [-1, 1], white ink on black; ``split`` is
    ``"train"``, ``"test"`` (a fixed stratified 90/10 split chosen by ``seed``) or ``"all"``.
    """

    num_classes = len(DIGIT_NAMES)
    class_names = list(DIGIT_NAMES)

    def __init__(self, resolution: int = 32, channels: int = 1, split: str = "all", seed: int = 0) -> None:
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        images, labels = load_digit_arrays()
        indices = split_indices(labels, split, seed)
        self.resolution, self.channels, self.split = resolution, channels, split
        self.indices = indices
        self.labels = torch.from_numpy(labels[indices].copy())
        self.images = upsample_digits(torch.from_numpy(images[indices].copy()), resolution)  # [N, 1, R, R]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        label = int(self.labels[index])
        image = self.images[index]
        return {
            "image": image.repeat(self.channels, 1, 1) if self.channels > 1 else image.clone(),
            "label": label,
            "caption": f"a handwritten digit {DIGIT_NAMES[label]}",
        }


def upsample_digits(ink: torch.Tensor, resolution: int) -> torch.Tensor:
    """Ink counts ``[N, 8, 8]`` (0..16) to float32 ``[N, 1, R, R]`` in [-1, 1], white on black.

    Bicubic interpolation keeps strokes smooth when upsampling; it overshoots at sharp edges, so the result
    is clamped back into range. Antialiasing applies only when ``R < 8`` (shrinking).
    """
    x = (ink.float() / _MAX_INK * 2 - 1)[:, None]  # 0 ink -> -1 (black), 16 -> +1 (white)
    if resolution != x.shape[-1]:
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False,
                          antialias=resolution < x.shape[-1])
    return x.clamp(-1, 1).contiguous()
