"""A1111 `parameters` text: writing, reading it back by A1111's rules, and the PNG chunk."""

from __future__ import annotations

import pytest
from PIL import Image

from unstatic.pipelines.infotext import format_infotext, parse_infotext, png_info, read_png_parameters

A1111_TEXT = ("a cat\nNegative prompt: ugly, blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, "
              "Seed: 1234, Size: 512x512, Model hash: abc123, Model: sd15, Version: v1.9.0")


def test_reads_a_real_a1111_text():
    prompt, negative, settings = parse_infotext(A1111_TEXT)
    assert (prompt, negative) == ("a cat", "ugly, blurry")
    assert settings == {"Steps": "20", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7",
                        "Seed": "1234", "Size": "512x512", "Model hash": "abc123", "Model": "sd15",
                        "Version": "v1.9.0"}
    assert list(settings) == ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash",
                              "Model", "Version"]  # in the order written


@pytest.mark.parametrize("prompt, negative", [
    ("a red circle above a blue square", ""),
    ("a red circle,\nabove: a blue square", "blurry,\nugly: very"),  # multi-line, with separators inside
    ("", "only a negative"),
    ("", ""),
    ('a "quoted" word', "Negative prompt: twice"),
])
def test_round_trip(prompt, negative):
    settings = {
        "Steps": 20, "Sampler": "DPM++ 2M", "CFG scale": 7.5, "Seed": 3,
        "Lora hashes": 'a: 1f2e, b: "x"',  # commas, colons and quotes: must be quoted and escaped
        "Note": "two\nlines", "Size": "64x32", "Empty": "",
    }
    text = format_infotext(prompt, negative, settings)
    assert parse_infotext(text) == (prompt, negative, {k: str(v) for k, v in settings.items()})


@pytest.mark.parametrize("value, written", [(7.0, "7"), (3.5, "3.5"), (4.123456789, "4.123456789"), (1e-7, "1e-07")])
def test_floats_are_written_short_and_read_back_exactly(value, written):
    settings = parse_infotext(format_infotext("p", "", {"Steps": 1, "Seed": 2, "CFG scale": value}))[2]
    assert settings["CFG scale"] == written and float(written) == value


def test_quoted_values_are_json_as_a1111_writes_them():
    text = format_infotext("p", "", {"Steps": 2, "Sampler": "Euler", "Hashes": 'x: "y", z'})
    assert text.splitlines()[-1] == 'Steps: 2, Sampler: Euler, Hashes: "x: \\"y\\", z"'


def test_a_last_line_with_few_pairs_is_prompt():
    """A1111 reads the last line as settings only if it holds three or more pairs."""
    assert parse_infotext("line one\nstyle: oil, mood: calm") == ("line one\nstyle: oil, mood: calm", "", {})
    assert parse_infotext("k1: 1, k2: 2, k3: 3") == ("", "", {"k1": "1", "k2": "2", "k3": "3"})


def test_lines_after_the_negative_prompt_belong_to_it():
    text = "sky\n  sea  \nNegative prompt: fog\nrain\nSteps: 2, Seed: 1, Size: 8x8"
    assert parse_infotext(text)[:2] == ("sky\nsea", "fog\nrain")


def test_png_chunk(tmp_path):
    text = format_infotext("a star", "dull", {"Steps": 3, "Seed": 1, "Size": "8x8"})
    Image.new("RGB", (4, 4)).save(tmp_path / "with.png", pnginfo=png_info(text))
    Image.new("RGB", (4, 4)).save(tmp_path / "without.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.jpg")
    assert read_png_parameters(tmp_path / "with.png") == text
    assert read_png_parameters(tmp_path / "without.png") is None
    with pytest.raises(ValueError, match="JPEG"):
        read_png_parameters(tmp_path / "photo.jpg")
