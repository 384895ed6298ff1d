"""The shapes reader: shapes, determinism, save/load, label encoding, and the committed weights' accuracy."""

import pytest
import torch

from unstatic.data.shapes import COLOURS, SHAPES, SIZES, ShapesDataset
from unstatic.evaluation.fidelity import matches, read_scenes
from unstatic.evaluation.shapes_reader import (
    IGNORE,
    ShapesReader,
    ShapesReaderConfig,
    default_reader_folder,
    load_reader,
    match_resolution,
    render_scenes,
    scene_targets,
)
from unstatic.evaluation.train_reader import augment, head_accuracy, validation_set
from unstatic.networks.weights import save_model


def tiny_reader(resolution: int = 32) -> ShapesReader:
    torch.manual_seed(0)
    return ShapesReader(ShapesReaderConfig(resolution=resolution, channels=(8, 8, 16), feature_dim=16)).eval()


@pytest.mark.parametrize("resolution", [32, 64])
def test_output_shapes(resolution):
    reader = tiny_reader(resolution)
    x = torch.rand(2, 3, resolution, resolution) * 2 - 1
    out = reader(x)
    assert out["shape"].shape == (2, 9, 1 + len(SHAPES))
    assert out["colour"].shape == (2, 9, len(COLOURS))
    assert out["size"].shape == (2, 9, len(SIZES))
    assert reader.features(x).shape == (2, 16)


def test_deterministic_and_batch_independent():
    reader = tiny_reader()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        batch = reader.features(x)
        assert torch.equal(batch, reader.features(x))
        single = torch.cat([reader.features(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)


def test_bad_input_and_config_are_named():
    with pytest.raises(ValueError, match="images"):
        tiny_reader()(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="resolution"):
        ShapesReaderConfig(resolution=48)
    with pytest.raises(ValueError, match="channels"):
        ShapesReaderConfig(channels=(32, 64))


def test_save_load_round_trip(tmp_path):
    reader = tiny_reader()
    save_model(reader, tmp_path / "reader")
    loaded = load_reader(tmp_path / "reader")
    assert loaded.config == reader.config
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.features(x), reader.features(x))


def test_targets_put_each_object_in_its_cell():
    world = ShapesDataset(length=50, seed=3, label=None)
    scenes = [world.scene(i) for i in range(50)]
    targets = scene_targets(scenes)
    for n, scene in enumerate(scenes):
        occupied = {3 * o.cell[0] + o.cell[1]: o for o in scene.objects}
        for cell in range(9):
            if cell in occupied:
                o = occupied[cell]
                assert SHAPES[targets["shape"][n, cell] - 1] == o.shape
                assert COLOURS[targets["colour"][n, cell]] == o.colour
                assert SIZES[targets["size"][n, cell]] == o.size
            else:
                assert targets["shape"][n, cell] == 0
                assert targets["colour"][n, cell] == IGNORE == targets["size"][n, cell]


def test_render_scenes_equals_dataset_images():
    world = ShapesDataset(length=4, seed=5, label=None)
    images = render_scenes([world.scene(i) for i in range(4)], 32)
    assert torch.equal(images, torch.stack([world[i]["image"] for i in range(4)]))


def test_augment_keeps_range_and_changes_pixels_slightly():
    images, _ = validation_set(16, 32, seed=11)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
    assert 0 < (out - images).abs().mean() < 0.2


def test_committed_reader_reads_fresh_renders():
    """The committed 32x32 weights on 200 renders from a world seed neither training nor validation used."""
    reader = load_reader(default_reader_folder(32))
    images, targets = validation_set(200, 32, seed=424_242)
    accuracy = head_accuracy(reader, images, targets)
    for head in ("occupancy", "shape", "colour", "size"):
        assert accuracy[head] >= 0.97, (head, accuracy)
    assert accuracy["scene"] >= 0.95, accuracy  # every cell right at once: the product of the per-cell rates


def test_missing_resolution_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="resolution 16"):
        default_reader_folder(16)


def test_64_pixel_images_are_read_through_area_downsampling():
    """No 64x64 reader is committed: 64x64 images are area-averaged to 32x32 and read by the 32x32 reader."""
    reader = load_reader(default_reader_folder(32))
    world = ShapesDataset(length=100, seed=515_151, label=None)
    scenes = [world.scene(i) for i in range(100)]
    read = read_scenes(reader, render_scenes(scenes, 64))
    assert sum(matches(r, s) for r, s in zip(read, scenes)) >= 95
    with pytest.raises(ValueError, match="multiple of 32"):
        match_resolution(torch.zeros(1, 3, 48, 48), 32)
