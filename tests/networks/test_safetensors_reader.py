"""Our safetensors reader against the reference writer: every dtype, odd shapes, metadata, broken files."""

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from unstatic.networks.safetensors_reader import SafetensorsReadError, read_safetensors


def sample_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tensors = {
        f"{dtype}".removeprefix("torch."): (torch.randn(3, 5, generator=generator) * 50).to(dtype)
        for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                      torch.int16, torch.int8, torch.uint8, torch.float8_e4m3fn, torch.float8_e5m2)
    }
    tensors["bool"] = torch.rand(7, generator=generator) > 0.5
    tensors["scalar"] = torch.tensor(2.5)
    tensors["empty"] = torch.zeros(0, 4)
    tensors["conv.weight"] = torch.randn(8, 3, 3, 3, generator=generator)
    return tensors


def test_reads_what_the_reference_writer_wrote_bit_for_bit(tmp_path):
    path = tmp_path / "all.safetensors"
    save_file(sample_tensors(), path, metadata={"format": "pt", "stored_as": "float16"})
    ours, metadata = read_safetensors(path)
    reference = load_file(path)
    assert ours.keys() == reference.keys()
    for key, expected in reference.items():
        assert ours[key].dtype == expected.dtype and ours[key].shape == expected.shape, key
        assert torch.equal(ours[key].view(-1).view(torch.uint8), expected.view(-1).view(torch.uint8)), key
    assert metadata == {"format": "pt", "stored_as": "float16"}


def test_every_tensor_owns_its_memory(tmp_path):
    """Separate storages are what let a loader free each tensor once copied (a shared map frees only at the end)."""
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(1000), "b": torch.ones(1000)}, path)
    before = path.read_bytes()
    tensors, _ = read_safetensors(path)
    assert tensors["a"].untyped_storage().data_ptr() != tensors["b"].untyped_storage().data_ptr()
    assert tensors["a"].untyped_storage().nbytes() == 4000 and tensors["a"].is_contiguous()
    tensors["a"] += 1  # writable, and writing does not reach the file
    assert path.read_bytes() == before


def write_raw(path, header: dict, data: bytes) -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8,
         r"it is truncated \(tensor 'w' needs bytes up to \d+, the file has \d+"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 12, r"tensor 'w' .* spans 12 bytes, not 16"),
        ({"w": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4, r"tensor 'w' has dtype 'Q7'"),
        ({"w": {"dtype": "F32", "shape": "four"}}, b"", r"tensor 'w' has a malformed header entry"),
        ([1, 2], b"", "its header is not a JSON object"),
    ],
)
def test_broken_files_name_the_file_and_the_tensor(tmp_path, header, data, message):
    path = tmp_path / "broken.safetensors"
    write_raw(path, header, data)
    with pytest.raises(SafetensorsReadError, match=rf"{path} is not a readable safetensors file: {message}"):
        read_safetensors(path)


def test_files_that_are_not_safetensors_at_all(tmp_path):
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(SafetensorsReadError, match="only 2 bytes long"):
        read_safetensors(short)
    png = tmp_path / "image.safetensors"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SafetensorsReadError, match="first 8 bytes give a header of"):
        read_safetensors(png)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(SafetensorsReadError, match="its header is not JSON"):
        read_safetensors(garbage)
