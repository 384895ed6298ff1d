"""A folder of images as a training dataset, with captions or class labels in the layouts trainers use.

Caption sources (``captions=``), following Hugging Face ``datasets`` ImageFolder and kohya's sd-scripts:

* ``"metadata"``: ``metadata.jsonl`` (one JSON object a line) or ``metadata.csv`` with a ``file_name`` and a
  ``text`` or ``caption`` field. ``file_name`` is relative to the metadata file's folder and may point into
  sub-folders; a metadata file in a sub-folder describes the images under it. Images no row lists are left out.
* ``"sidecar"``: ``name.txt`` (or kohya's ``name.caption``) next to ``name.png``.
* ``"classes"``: ``root/<class>/...`` sub-folders; labels number the folder names in sorted order, and the
  caption is the folder name with ``_`` read as a space.
* ``"none"``: images only. ``"auto"`` picks the first that applies, in the order above (classes only when
  every image sits in one of at least two sub-folders).

The folder is scanned recursively in sorted order, hidden files and folders ignored. Each image's header is
read once at construction; unreadable or too-small files are left out with one warning and recorded in
``skipped``. A file that passed that check but fails to decode later (a truncated download) never stops
training: the dataset warns once and returns the next image that decodes.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections import Counter
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from unstatic.data.images import (
    CROP_MODES,
    IMAGE_EXTENSIONS,
    augmentation_rng,
    is_image_file,
    load_image,
    prepare_image,
    read_image_size,
)

CAPTION_MODES = ("auto", "metadata", "sidecar", "classes", "none")
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")  # the .jsonl wins where a folder has both
SIDECAR_EXTENSIONS = (".txt", ".caption")  # the .txt wins where an image has both
CAPTION_KEYS = ("text", "caption")  # the first present in a row is used
_WARN_FIRST = 5  # how many skipped paths a warning lists


class ImageFolderDataset(Dataset):
    """Square training crops from a folder of images, with captions or class labels when the folder has them.

    Items are ``{"image": float32 [channels, resolution, resolution] in [-1, 1]}`` plus ``"caption"`` (str)
    unless ``captions`` resolves to ``"none"``, and ``"label"`` (int) for class sub-folders. After
    construction ``captions`` holds the resolved mode and ``paths`` the image files in item order. Random
    crops and flips depend on ``(seed, epoch, index)`` only; call :meth:`set_epoch` each epoch.

    ``skipped`` lists ``(path, reason)`` for every file left out. Files that fail to decode later are added by
    the process that met them, so under DataLoader workers those additions stay in the worker's copy.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        resolution: int = 64,
        crop: str = "center",
        flip: bool = False,
        seed: int = 0,
        channels: int = 3,
        min_size: int | None = None,
        captions: str = "auto",
    ) -> None:
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if min_size is not None and min_size < 0:
            raise ValueError(f"min_size must be >= 0 pixels, got {min_size}")
        if captions not in CAPTION_MODES:
            raise ValueError(f"captions must be one of {CAPTION_MODES}, got {captions!r}")
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder not found: {str(self.root)!r}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"expected a folder of images, got a file: {str(self.root)!r}")
        self.resolution, self.crop, self.flip, self.seed, self.channels = resolution, crop, flip, seed, channels
        self.min_size = resolution // 2 if min_size is None else min_size
        self.epoch = 0
        self.skipped: list[tuple[str, str]] = []
        self.class_names: list[str] | None = None
        self._failed: set[int] = set()  # indices that failed to decode in this process

        images, files = _walk(self.root)
        metadata_files = _metadata_files(self.root, files)
        self.captions = _resolve_mode(captions, images, files, metadata_files)
        if self.captions == "metadata":
            if not metadata_files:
                raise ValueError(f"captions='metadata' but there is no {' or '.join(METADATA_NAMES)} "
                                 f"under {self.root}")
            entries = self._metadata_entries(images, metadata_files)
        elif self.captions == "sidecar":
            entries = self._sidecar_entries(images, files)
        elif self.captions == "classes":
            entries = self._class_entries(images)
        else:
            entries = [(path, None, None) for path in images.values()]
        entries = self._readable(entries)
        self._warn_skipped(len(entries))
        if not entries:
            raise ValueError(
                f"no usable images in {self.root}: searched for {', '.join(IMAGE_EXTENSIONS)} (any case, "
                f"recursively, hidden files ignored) and skipped {len(self.skipped)}"
                + (f", e.g. {self.skipped[0][0]} ({self.skipped[0][1]})" if self.skipped else "")
            )
        self.paths = [str(path) for path, _, _ in entries]
        self._captions = None if self.captions == "none" else [caption for _, caption, _ in entries]
        self._labels = [label for _, _, label in entries] if self.captions == "classes" else None

    @property
    def num_classes(self) -> int:
        """How many class sub-folders label the images; 0 when the images carry no class labels."""
        return len(self.class_names) if self.class_names else 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips :meth:`__getitem__` returns."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = int(index) % len(self)  # numpy or tensor integers from samplers: a plain int seeds the rng
        source, image = self._decode_first_good(index)
        # Augmentation follows the index asked for, not the substitute, so a bad file changes only its slot.
        item = {"image": prepare_image(image, self.resolution, self.crop, self.flip,
                                       augmentation_rng(self.seed, self.epoch, index))}
        if self._captions is not None:
            item["caption"] = self._captions[source]
        if self._labels is not None:
            item["label"] = self._labels[source]
        return item

    def _decode_first_good(self, index: int) -> tuple[int, Image.Image]:
        """``(i, image)`` for the first ``i`` from ``index`` on (wrapping round) whose file decodes.

        Whether a file decodes is a property of the file, so the substitute is the same in every process and
        on every call; failures are remembered so each bad file is tried, and warned about, once.
        """
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            if candidate in self._failed:
                continue
            try:
                return candidate, load_image(self.paths[candidate], self.channels)
            except Exception as error:  # Pillow raises many types (OSError, SyntaxError, ValueError...) on bad data
                self._failed.add(candidate)
                reason = f"decode failed: {type(error).__name__}: {error}"
                self.skipped.append((self.paths[candidate], reason))
                warnings.warn(f"ImageFolderDataset: {self.paths[candidate]} could not be decoded ({reason}); "
                              "using the next image in its place", stacklevel=3)
        raise RuntimeError(f"none of the {len(self)} images in {self.root} could be decoded")

    def _metadata_entries(self, images: dict[str, Path], metadata_files: list[Path]) -> list[tuple]:
        """Images listed in the metadata files with their captions, in sorted path order."""
        captions: dict[str, str] = {}
        for metadata in metadata_files:
            for line, file_name, caption in _read_metadata(metadata):
                relative = _relative_key(self.root, metadata.parent / file_name.replace("\\", "/"))
                where = f"listed in {metadata.relative_to(self.root).as_posix()} line {line}"
                if relative is None:
                    self.skipped.append((str(metadata.parent / file_name), f"outside the folder: {where}"))
                elif relative not in images:
                    path = self.root / relative
                    kind = "not usable: hidden or not a supported image" if path.is_file() else "missing"
                    self.skipped.append((str(path), f"{kind}: {where}"))
                elif relative in captions:
                    self.skipped.append((str(images[relative]), f"duplicate: {where}; the first row is used"))
                else:
                    captions[relative] = caption
        for relative, path in images.items():
            if relative not in captions:
                self.skipped.append((str(path), "not listed in metadata"))
        return [(images[relative], captions[relative], None) for relative in images if relative in captions]

    def _sidecar_entries(self, images: dict[str, Path], files: set[str]) -> list[tuple]:
        """Every image with the text of its sidecar file, or ``""`` (and one warning) where it has none."""
        entries, without = [], 0
        for relative, path in images.items():
            stem = relative[: -len(path.suffix)]
            sidecar = next((stem + ext for ext in SIDECAR_EXTENSIONS if stem + ext in files), None)
            if sidecar is None:
                without += 1
            caption = "" if sidecar is None else (self.root / sidecar).read_text("utf-8-sig", "replace").strip()
            entries.append((path, caption, None))
        if without:
            warnings.warn(f"ImageFolderDataset: {without} of {len(images)} images under {self.root} have no "
                          f"{' or '.join(SIDECAR_EXTENSIONS)} caption file; their caption is ''", stacklevel=3)
        return entries

    def _class_entries(self, images: dict[str, Path]) -> list[tuple]:
        """Images inside ``root/<class>/`` labelled by the sorted position of ``<class>``."""
        self.class_names = sorted({relative.split("/")[0] for relative in images if "/" in relative})
        if not self.class_names:
            raise ValueError(f"captions='classes' needs images in sub-folders of {self.root} (one per class); "
                             "found images only directly inside it")
        labels = {name: label for label, name in enumerate(self.class_names)}
        entries = []
        for relative, path in images.items():
            if "/" not in relative:
                self.skipped.append((str(path), "not in a class folder: it sits directly in the root"))
                continue
            name = relative.split("/")[0]
            entries.append((path, name.replace("_", " "), labels[name]))
        return entries

    def _readable(self, entries: list[tuple]) -> list[tuple]:
        """The entries whose header Pillow can read and whose shorter side is at least ``min_size``."""
        kept = []
        for entry in entries:
            try:
                width, height = read_image_size(entry[0])
            except Exception as error:  # any failure to identify the file means it cannot be used
                self.skipped.append((str(entry[0]), f"unreadable: {type(error).__name__}: {error}"))
                continue
            if min(width, height) < self.min_size:
                self.skipped.append((str(entry[0]), f"too small: {width}x{height} < min_size {self.min_size}"))
                continue
            kept.append(entry)
        return kept

    def _warn_skipped(self, kept: int) -> None:
        """One warning for everything the scan left out: counts by reason, then the first few paths."""
        if not self.skipped:
            return
        counts = Counter(reason.split(":")[0] for _, reason in self.skipped)
        first = "; ".join(f"{path} ({reason})" for path, reason in self.skipped[:_WARN_FIRST])
        more = f"; and {len(self.skipped) - _WARN_FIRST} more" if len(self.skipped) > _WARN_FIRST else ""
        summary = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
        warnings.warn(f"ImageFolderDataset: skipped {len(self.skipped)} files under {self.root} and kept {kept} "
                      f"({summary}): {first}{more}", stacklevel=3)


def _walk(root: Path) -> tuple[dict[str, Path], set[str]]:
    """Image files by root-relative POSIX path, in sorted order, and the set of every file's relative path."""
    files: set[str] = set()
    for directory, folders, names in os.walk(root):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        base = Path(directory).relative_to(root)
        files.update((base / name).as_posix() for name in names if not name.startswith("."))
    images = {relative: root / relative for relative in sorted(files) if is_image_file(relative)}
    return images, files


def _metadata_files(root: Path, files: set[str]) -> list[Path]:
    """One metadata file per folder (the ``.jsonl`` where both exist), sorted by path."""
    chosen: dict[str, str] = {}
    for relative in sorted(files):
        folder, _, name = relative.rpartition("/")
        if name not in METADATA_NAMES:
            continue
        if folder in chosen:
            warnings.warn(f"ImageFolderDataset: {root / folder} has both {' and '.join(METADATA_NAMES)}; "
                          f"using {METADATA_NAMES[0]}", stacklevel=3)
            if name != METADATA_NAMES[0]:
                continue
        chosen[folder] = relative
    return [root / relative for _, relative in sorted(chosen.items())]


def _resolve_mode(captions: str, images: dict[str, Path], files: set[str], metadata_files: list[Path]) -> str:
    """The caption mode ``"auto"`` stands for in this folder (other modes are returned as given)."""
    if captions != "auto":
        return captions
    if metadata_files:
        return "metadata"
    for relative, path in images.items():
        stem = relative[: -len(path.suffix)]
        if any(stem + ext in files for ext in SIDECAR_EXTENSIONS):
            return "sidecar"
    # One sub-folder of everything is more likely an organising folder than a single class, so ask for two.
    folders = {relative.split("/")[0] if "/" in relative else None for relative in images}
    if None not in folders and len(folders) >= 2:
        return "classes"
    return "none"


def _relative_key(root: Path, path: Path) -> str | None:
    """``path`` relative to ``root`` as a normalised POSIX string, or ``None`` when it lies outside."""
    relative = os.path.normpath(os.path.relpath(path, root))
    if relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative):
        return None
    return Path(relative).as_posix()


def _read_metadata(path: Path) -> list[tuple[int, str, str]]:
    """``(line, file_name, caption)`` rows of a ``metadata.jsonl`` or ``metadata.csv``.

    Malformed files raise ValueError naming the file and line: a silently ignored metadata file would train on
    empty captions. A row without a caption value gets ``""``.
    """
    rows: list[tuple[int, dict]] = []
    with open(path, encoding="utf-8-sig", newline="") as stream:
        if path.suffix == ".jsonl":
            for line, text in enumerate(stream, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: line {line} is not valid JSON ({error})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}: line {line} should be a JSON object, got {type(row).__name__}")
                rows.append((line, row))
        else:
            reader = csv.DictReader(stream)
            rows = [(reader.line_num, row) for row in reader]
    keys = {key for _, row in rows for key in row if isinstance(key, str)}  # csv names surplus cells None
    if rows and not keys.intersection(CAPTION_KEYS):
        raise ValueError(f"{path} has no {' or '.join(repr(key) for key in CAPTION_KEYS)} field for captions; "
                         f"found {sorted(keys)} (pass captions='none' to ignore it)")
    parsed = []
    for line, row in rows:
        file_name = row.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise ValueError(f"{path}: line {line} has no 'file_name' (found fields {sorted(map(str, row))})")
        value = next((row[key] for key in CAPTION_KEYS if key in row), None)
        if value is not None and not isinstance(value, (str, int, float)):
            raise ValueError(f"{path}: line {line} has a caption of type {type(value).__name__}; expected text")
        parsed.append((line, file_name, "" if value is None else str(value).strip()))
    return parsed
