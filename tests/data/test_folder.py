"""ImageFolderDataset and the image loading under it, on tiny folders built in tmp_path with Pillow."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unstatic.data.folder import ImageFolderDataset
from unstatic.data.images import load_image, read_image_size

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
           "black": (0, 0, 0), "yellow": (255, 255, 0)}


def _solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _noise_png(path: Path, size: int = 48, seed: int = 0, height: int | None = None) -> Path:
    """Noise does not compress, so the PNG's pixel data fills most of the file (useful for truncation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size if height is None else height, size, 3)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def _colour_of(image: torch.Tensor) -> tuple[int, ...]:
    """The 8-bit colour of a solid-colour item, from its mean."""
    return tuple(int(v) for v in ((image.mean(dim=(1, 2)) + 1) * 127.5).round())


def _items(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


# --- caption conventions ---------------------------------------------------------------------------------------

def test_metadata_jsonl_pairs_captions_with_files_in_subfolders(tmp_path):
    _solid(tmp_path / "a.png", COLOURS["red"])
    _solid(tmp_path / "sub" / "b.png", COLOURS["green"])
    _solid(tmp_path / "sub" / "deeper" / "c.png", COLOURS["blue"])
    _solid(tmp_path / "unlisted.png", COLOURS["white"])
    rows = [{"file_name": "sub/b.png", "text": "a green square"},
            {"file_name": "a.png", "caption": "a red square"},  # kohya-style key
            {"file_name": "sub/deeper/c.png", "text": ""},  # exists, empty caption: kept
            {"file_name": "gone.png", "text": "no such file"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    with pytest.warns(UserWarning, match=r"skipped 2 .*1 missing.*1 not listed in metadata"):
        dataset = ImageFolderDataset(tmp_path, resolution=16)
    assert dataset.captions == "metadata" and len(dataset) == 3
    by_colour = {_colour_of(item["image"]): item["caption"] for item in _items(dataset)}
    assert by_colour == {COLOURS["red"]: "a red square", COLOURS["green"]: "a green square", COLOURS["blue"]: ""}
    assert "label" not in dataset[0] and dataset.num_classes == 0 and dataset.class_names is None
    skipped = {Path(path).name: reason for path, reason in dataset.skipped}
    assert skipped["gone.png"].startswith("missing") and "line 4" in skipped["gone.png"]
    assert skipped["unlisted.png"] == "not listed in metadata"


def test_metadata_csv_and_metadata_in_a_subfolder_are_relative_to_their_folder(tmp_path):
    _solid(tmp_path / "x.png", COLOURS["red"])
    _solid(tmp_path / "part" / "y.png", COLOURS["green"])
    with open(tmp_path / "metadata.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file_name", "text", "extra"])
        writer.writerow(["x.png", "red, square, \"quoted\"", "ignored"])
    (tmp_path / "part" / "metadata.jsonl").write_text(json.dumps({"file_name": "y.png", "text": " green "}))
    dataset = ImageFolderDataset(tmp_path, resolution=16)
    by_colour = {_colour_of(item["image"]): item["caption"] for item in _items(dataset)}
    assert by_colour == {COLOURS["red"]: 'red, square, "quoted"', COLOURS["green"]: "green"}


def test_metadata_without_a_caption_column_or_with_bad_json_is_a_clear_error(tmp_path):
    _solid(tmp_path / "x.png", COLOURS["red"])
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "label": 3}))
    with pytest.raises(ValueError, match=r"metadata.jsonl has no 'text' or 'caption'"):
        ImageFolderDataset(tmp_path, resolution=16)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "text": "ok"}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"line 2 is not valid JSON"):
        ImageFolderDataset(tmp_path, resolution=16)
    assert len(ImageFolderDataset(tmp_path, resolution=16, captions="none")) == 1  # metadata ignored on request


def test_sidecar_txt_and_caption_files(tmp_path):
    _solid(tmp_path / "a.png", COLOURS["red"])
    (tmp_path / "a.txt").write_text("\ufeffred square\n", encoding="utf-8")  # BOM and newline are not caption
    _solid(tmp_path / "d" / "b.v2.jpg", COLOURS["green"])
    (tmp_path / "d" / "b.v2.caption").write_text("green square")
    _solid(tmp_path / "c.png", COLOURS["blue"])  # no sidecar: caption ""
    with pytest.warns(UserWarning, match=r"1 of 3 images .* no \.txt or \.caption"):
        dataset = ImageFolderDataset(tmp_path, resolution=16)
    assert dataset.captions == "sidecar"
    by_colour = {_colour_of(item["image"]): item["caption"] for item in _items(dataset)}
    assert by_colour[COLOURS["red"]] == "red square" and by_colour[COLOURS["blue"]] == ""
    assert by_colour[min(by_colour, key=lambda c: sum(abs(a - b) for a, b in zip(c, COLOURS["green"])))] == \
        "green square"  # JPEG shifts the colour a little


def test_class_subfolders_become_labels_in_sorted_folder_order(tmp_path):
    for name, colour in (("dog", "red"), ("cat", "green"), ("big_bird", "blue")):
        for k in range(2):
            _solid(tmp_path / name / f"{k}.png", COLOURS[colour])
    _solid(tmp_path / "dog" / "puppies" / "p.png", COLOURS["red"])  # nested: still a dog
    dataset = ImageFolderDataset(tmp_path, resolution=16)
    assert dataset.captions == "classes"
    assert dataset.class_names == ["big_bird", "cat", "dog"] and dataset.num_classes == 3
    expected = {"big_bird": (COLOURS["blue"], "big bird"), "cat": (COLOURS["green"], "cat"),
                "dog": (COLOURS["red"], "dog")}
    labels = []
    for item in _items(dataset):
        colour, caption = expected[dataset.class_names[item["label"]]]
        assert _colour_of(item["image"]) == colour and item["caption"] == caption
        labels.append(item["label"])
    assert sorted(labels) == [0, 0, 1, 1, 2, 2, 2]


def test_flat_folder_has_no_captions_and_forced_modes_explain_themselves(tmp_path):
    _solid(tmp_path / "a.png", COLOURS["red"])
    dataset = ImageFolderDataset(tmp_path, resolution=16)
    assert dataset.captions == "none" and set(dataset[0]) == {"image"} and dataset.num_classes == 0
    with pytest.raises(ValueError, match="captions='metadata' but there is no metadata.jsonl"):
        ImageFolderDataset(tmp_path, resolution=16, captions="metadata")
    with pytest.raises(ValueError, match="captions='classes' needs images in sub-folders"):
        ImageFolderDataset(tmp_path, resolution=16, captions="classes")


def test_scan_is_recursive_case_insensitive_sorted_and_ignores_hidden_and_other_files(tmp_path):
    names = ["z.PNG", "a/b.JpG", "a/c.jpeg", "m.webp", "n.BMP", "o.gif", "p/q/r.tif", "s.TIFF"]
    for name in names:
        _solid(tmp_path / name, COLOURS["red"])
    _solid(tmp_path / ".hidden.png", COLOURS["red"])
    _solid(tmp_path / ".cache" / "x.png", COLOURS["red"])
    (tmp_path / "notes.md").write_text("not an image")
    dataset = ImageFolderDataset(tmp_path, resolution=16, captions="none")
    relative = [Path(path).relative_to(tmp_path).as_posix() for path in dataset.paths]
    assert relative == sorted(names)
    assert ImageFolderDataset(tmp_path, resolution=16).paths == dataset.paths  # same order every time


# --- image modes -------------------------------------------------------------------------------------------------

def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_every_mode_loads_to_the_right_shape_range_and_colour(tmp_path):
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # invisible red: must come out white
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    wide = np.full((8, 8), 40000, dtype=np.uint16)
    cases = {
        "rgba.png": (_save(transparent, tmp_path / "rgba.png"), (255, 255, 255)),
        "la.png": (_save(Image.new("LA", (8, 8), (0, 0)), tmp_path / "la.png"), (255, 255, 255)),
        "p.png": (_save(palette, tmp_path / "p.png", transparency=1), (255, 255, 255)),
        "p_opaque.gif": (_save(palette, tmp_path / "p_opaque.gif"), (255, 0, 0)),
        "l.png": (_save(Image.new("L", (8, 8), 100), tmp_path / "l.png"), (100, 100, 100)),
        "one.bmp": (_save(Image.new("1", (8, 8), 1), tmp_path / "one.bmp"), (255, 255, 255)),
        # Naive CMYK -> RGB: R = 255 - C - K and so on, so full magenta ink alone leaves R and B.
        "cmyk.tif": (_save(Image.new("CMYK", (8, 8), (0, 255, 0, 0)), tmp_path / "cmyk.tif"), (255, 0, 255)),
        # 16-bit gray scales onto 8 bits (Pillow's own convert would clip every value above 255 to white).
        "gray16.png": (_save(Image.fromarray(wide), tmp_path / "gray16.png"), (round(40000 / 257),) * 3),
    }
    for name, (path, rgb) in cases.items():
        for channels in (3, 1):
            image = ImageFolderDataset(path.parent, resolution=8, channels=channels, captions="none")
            item = image[image.paths.index(str(path))]["image"]
            assert item.dtype == torch.float32 and item.shape == (channels, 8, 8), name
            assert item.min() >= -1 and item.max() <= 1, name
            expected = torch.tensor(rgb, dtype=torch.float32) if channels == 3 else \
                torch.tensor([0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]])  # ITU-R 601 luma
            assert torch.allclose((item + 1) * 127.5, expected[:, None, None].expand_as(item), atol=1.01), name


def test_exif_orientation_is_applied_before_sizing(tmp_path):
    image = Image.new("RGB", (20, 10), COLOURS["red"])
    image.paste(COLOURS["blue"], (0, 0, 10, 10))  # blue on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    assert read_image_size(tmp_path / "rotated.jpg") == (10, 20)
    loaded = np.asarray(load_image(tmp_path / "rotated.jpg")).astype(int)
    assert loaded.shape == (20, 10, 3)
    assert loaded[2, 5, 2] > 200 and loaded[17, 5, 0] > 200  # left half rotated to the top: blue above red


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), COLOURS["green"]), Image.new("RGB", (8, 8), COLOURS["blue"])]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert _colour_of(ImageFolderDataset(tmp_path, resolution=8)[0]["image"]) == COLOURS["green"]


# --- bad files and bad input -------------------------------------------------------------------------------------

def test_corrupt_truncated_and_tiny_files_are_skipped_with_one_warning_and_never_crash(tmp_path):
    _noise_png(tmp_path / "b_good.png", seed=1)
    (tmp_path / "a_corrupt.png").write_bytes(np.random.default_rng(0).bytes(500))
    _solid(tmp_path / "c_tiny.png", COLOURS["red"], size=(5, 40))  # short side 5 < 16 // 2
    whole = _noise_png(tmp_path / "scratch" / "full.png", seed=2).read_bytes()
    (tmp_path / "d_truncated.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "scratch" / "full.png").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageFolderDataset(tmp_path, resolution=16)
    assert len(caught) == 1
    assert "skipped 2" in str(caught[0].message) and "a_corrupt.png" in str(caught[0].message)
    reasons = {Path(path).name: reason for path, reason in dataset.skipped}
    assert reasons["a_corrupt.png"].startswith("unreadable") and reasons["c_tiny.png"].startswith("too small")
    assert [Path(path).name for path in dataset.paths] == ["b_good.png", "d_truncated.png"]  # header was fine

    with pytest.warns(UserWarning, match="d_truncated.png could not be decoded"):
        substitute = dataset[1]
    assert torch.equal(substitute["image"], dataset[0]["image"])  # wrapped round to the next good image
    assert Path(dataset.skipped[-1][0]).name == "d_truncated.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no new warning, same answer
        assert torch.equal(dataset[1]["image"], substitute["image"])


def test_folder_where_nothing_decodes_raises_instead_of_looping(tmp_path):
    whole = _noise_png(tmp_path / "full.png").read_bytes()
    (tmp_path / "full.png").write_bytes(whole[: len(whole) // 2])
    dataset = ImageFolderDataset(tmp_path, resolution=16)
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="none of the 1 images"):
        dataset[0]


def test_missing_root_and_folders_without_usable_images_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        ImageFolderDataset(tmp_path / "no_such_folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no usable images in .*empty: searched for .png, .jpg.*skipped 0"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"bad: .*skipped 1, e.g. .*x.jpg"):
        ImageFolderDataset(tmp_path / "bad")
    _solid(tmp_path / "file.png", COLOURS["red"])
    with pytest.raises(NotADirectoryError, match="file.png"):
        ImageFolderDataset(tmp_path / "file.png")


@pytest.mark.parametrize("kwargs, field", [({"crop": "middle"}, "crop"), ({"channels": 4}, "channels"),
                                           ({"resolution": 0}, "resolution"), ({"captions": "tags"}, "captions"),
                                           ({"seed": -1}, "seed"), ({"min_size": -3}, "min_size")])
def test_bad_arguments_name_the_field(tmp_path, kwargs, field):
    _solid(tmp_path / "a.png", COLOURS["red"])
    with pytest.raises(ValueError, match=field):
        ImageFolderDataset(tmp_path, **kwargs)


# --- geometry and augmentation -----------------------------------------------------------------------------------

def _banded(path: Path, size: tuple[int, int], centre: tuple[int, int]) -> Path:
    """Red before the centre band, green inside ``centre`` (start, stop) along the long side, blue after."""
    width, height = size
    along = np.arange(max(size))
    band = np.where(along < centre[0], 0, np.where(along < centre[1], 1, 2))
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    band_2d = band[None, :width] if width >= height else band[:height, None]
    for k in range(3):
        pixels[..., k] = np.broadcast_to(np.where(band_2d == k, 255, 0), (height, width))
    Image.fromarray(pixels, "RGB").save(path)
    return path


@pytest.mark.parametrize("size", [(128, 64), (64, 128)])
def test_centre_crop_keeps_the_centre_and_random_crops_move(tmp_path, size):
    # The green band covers original pixels 24..104 of 128; the centre crop after halving to 32 px on the
    # short side covers 32..96, so it is green with a margin wider than Lanczos's reach.
    _banded(tmp_path / "banded.png", size, centre=(24, 104))
    rgb = (ImageFolderDataset(tmp_path, resolution=32)[0]["image"] + 1) * 127.5
    assert rgb[1].min() > 240 and rgb[0].max() < 15 and rgb[2].max() < 15

    moving = ImageFolderDataset(tmp_path, resolution=32, crop="random")
    saw_other_colour = False
    for epoch in range(10):
        moving.set_epoch(epoch)
        crop = (moving[0]["image"] + 1) * 127.5
        saw_other_colour |= bool(crop[0].max() > 128 or crop[2].max() > 128)
    assert saw_other_colour  # the test above could tell an off-centre crop apart


def test_random_crop_and_flip_depend_only_on_seed_epoch_and_index(tmp_path):
    for k in range(3):
        _noise_png(tmp_path / f"{k}.png", size=40, height=28, seed=k)  # wide: room to move the crop
    def make(seed: int = 0) -> ImageFolderDataset:
        return ImageFolderDataset(tmp_path, resolution=24, crop="random", flip=True, seed=seed)

    first, second = make(), make()
    first.set_epoch(3)
    second.set_epoch(3)
    forwards = [first[i]["image"] for i in range(3)]
    backwards = [second[i]["image"] for i in reversed(range(3))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forwards, backwards))

    epochs = []
    for epoch in range(4):
        first.set_epoch(epoch)
        epochs.append(first[0]["image"])
    assert not all(torch.equal(epochs[0], other) for other in epochs[1:])
    other_seed = make(seed=1)
    other_seed.set_epoch(3)
    assert not all(torch.equal(forwards[i], other_seed[i]["image"]) for i in range(3))
    with pytest.raises(ValueError, match="epoch"):
        first.set_epoch(-1)


def test_flip_mirrors_the_unflipped_crop_and_happens_about_half_the_time(tmp_path):
    _noise_png(tmp_path / "x.png", size=16)
    plain = ImageFolderDataset(tmp_path, resolution=16)[0]["image"]
    flipping = ImageFolderDataset(tmp_path, resolution=16, flip=True)
    flips = 0
    for epoch in range(32):
        flipping.set_epoch(epoch)
        image = flipping[0]["image"]
        mirrored = torch.equal(image, plain.flip(-1))
        assert mirrored or torch.equal(image, plain)
        flips += mirrored
    assert 6 <= flips <= 26  # Binomial(32, 1/2): outside this range with probability < 1e-3


def test_items_are_the_same_from_dataloader_workers(tmp_path):
    for k in range(4):
        _noise_png(tmp_path / f"{k}.png", size=32, height=20, seed=k)
    dataset = ImageFolderDataset(tmp_path, resolution=16, crop="random", flip=True)
    dataset.set_epoch(5)
    direct = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
    assert torch.equal(torch.cat([batch["image"] for batch in loader]), direct)
