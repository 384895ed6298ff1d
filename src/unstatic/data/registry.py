"""Datasets by name, for configs and the command line: ``build_dataset("shapes", resolution=32, **options)``."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

DATASETS = ("shapes", "folder", "digits")


def build_dataset(name: str, resolution: int, options: dict[str, Any] | None = None) -> Dataset:
    """Build a dataset; every item is a dict with ``image`` ([C, R, R] in [-1, 1]) and optionally ``label``
    and ``caption``."""
    options = dict(options or {})
    if name == "shapes":
        from unstatic.data.shapes import ShapesDataset

        return ShapesDataset(resolution=resolution, **options)
    if name == "folder":
        from unstatic.data.folder import ImageFolderDataset

        if "root" not in options:
            raise ValueError('the folder dataset needs data.options.root = "path/to/images"')
        return ImageFolderDataset(resolution=resolution, **options)
    if name == "digits":
        from unstatic.data.digits import DigitsDataset

        return DigitsDataset(resolution=resolution, **options)
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def dataset_classes(dataset: Dataset) -> tuple[int, tuple[str, ...]]:
    """``(num_classes, class_names)`` of a labelled dataset, ``(0, ())`` otherwise."""
    count = int(getattr(dataset, "num_classes", 0) or 0)
    names = getattr(dataset, "class_names", None)
    names = names() if callable(names) else names
    return count, tuple(names or ())
