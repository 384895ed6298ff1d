"""Bad checkpoints fail with a message that names the file and what is wrong with it (the tensor, the missing
component and the option that supplies it)."""

from __future__ import annotations

import shutil

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from tests.stable_diffusion.tiny import TOKENIZER, generate
from unstatic.cli import main
from unstatic.models.stable_diffusion import load_any_model
from unstatic.models.stable_diffusion.single_file import save_single_file

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]
UNET_KEY = "model.diffusion_model.input_blocks.1.1.proj_in.weight"


class Payload:
    """Stands for any class a pickle names: unpickling it would import and run code."""


@pytest.fixture(scope="module")
def tensors(loaded, tmp_path_factory) -> dict:
    path = save_single_file(loaded["sd1"], tmp_path_factory.mktemp("bad") / "sd1.safetensors")
    return load_file(path)


def write(tmp_path, tensors, name="model.safetensors"):
    path = tmp_path / name
    save_file(tensors, path)
    return path


def test_unknown_family(tmp_path, tensors):
    with pytest.raises(ValueError, match="not a Stable Diffusion checkpoint.*no U-Net tensors"):
        load_any_model(write(tmp_path, {"encoder.weight": torch.zeros(2)}))
    unet_only = {k: v for k, v in tensors.items() if k.startswith("model.diffusion_model.")}
    with pytest.raises(ValueError, match=r"unknown model family.*cross-attention width of \[64\].*768.*1024"):
        load_any_model(write(tmp_path, unet_only, "unet.safetensors"))
    with pytest.raises(ValueError, match="holds no first SDXL text encoder"):  # SDXL by its key layout, then incomplete
        load_any_model(write(tmp_path, {**tensors, "conditioner.embedders.1.x": torch.zeros(1)}, "xl.safetensors"),
                       tokenizer=TOKENIZER)


def test_missing_vae_is_named_and_vae_option_supplies_it(tmp_path, tensors, loaded, sd_folders):
    path = write(tmp_path, {k: v for k, v in tensors.items() if not k.startswith("first_stage_model.")})
    with pytest.raises(ValueError, match=rf"{path}.*no VAE.*--vae"):
        load_any_model(path, tokenizer=TOKENIZER)
    reference = generate(loaded["sd1"])
    vae_only = write(tmp_path, {k: v for k, v in tensors.items() if k.startswith("first_stage_model.")}, "vae.safetensors")
    standalone = write(tmp_path, {k.removeprefix("first_stage_model."): v for k, v in tensors.items()
                                  if k.startswith("first_stage_model.")}, "vae-standalone.safetensors")
    for vae in (sd_folders["sd1"] / "vae", vae_only, standalone):
        model = load_any_model(path, tokenizer=TOKENIZER, vae=vae).model
        torch.testing.assert_close(generate(model), reference, rtol=0, atol=0, msg=str(vae))


def test_missing_tokenizer_and_text_encoder(tmp_path, tensors):
    path = write(tmp_path, tensors)  # no unstatic metadata: no tokenizer inside
    with pytest.raises(FileNotFoundError, match=rf"{path} holds no tokenizer; pass --tokenizer"):
        load_any_model(path)
    no_text = write(tmp_path, {k: v for k, v in tensors.items() if not k.startswith("cond_stage_model.")}, "no-text.safetensors")
    with pytest.raises(ValueError, match="unknown model family"):  # without a text encoder a width of 64 says nothing
        load_any_model(no_text, tokenizer=TOKENIZER)


def test_truncated_and_corrupt_files(tmp_path, tensors):
    whole = write(tmp_path, tensors).read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=rf"{truncated} is not a readable safetensors file.*truncated"):
        load_any_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match=rf"{garbage} is not a readable safetensors file"):
        load_any_model(garbage)
    ckpt = tmp_path / "truncated.ckpt"
    torch.save(tensors, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"{ckpt} is not a readable PyTorch checkpoint"):
        load_any_model(ckpt)


def test_mismatched_shape_and_missing_tensor_are_named(tmp_path, tensors):
    wrong = dict(tensors)
    wrong[UNET_KEY] = torch.zeros(3, 3, 1, 1)
    path = write(tmp_path, wrong)
    with pytest.raises(ValueError, match=rf"{path}.*{UNET_KEY} has shape \(3, 3, 1, 1\), expected \(32, 32, 1, 1\)"):
        load_any_model(path, tokenizer=TOKENIZER)
    missing_key = "model.diffusion_model.output_blocks.1.0.in_layers.2.weight"
    path = write(tmp_path, {k: v for k, v in tensors.items() if k != missing_key}, "missing.safetensors")
    with pytest.raises(ValueError, match=rf"{path}.*missing tensors: {missing_key}"):
        load_any_model(path, tokenizer=TOKENIZER)


def test_pickles_needing_arbitrary_code_are_refused(tmp_path, tensors):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": tensors, "callbacks": Payload()}, path)
    with pytest.raises(ValueError, match=rf"{path} is refused: it needs arbitrary unpickling.*weights_only=True"):
        load_any_model(path, tokenizer=TOKENIZER)


def test_diffusers_folder_missing_and_broken_components(tmp_path, sd_folders, loaded):
    folder = tmp_path / "pipeline"
    shutil.copytree(sd_folders["sd1"], folder)
    shutil.rmtree(folder / "vae")
    with pytest.raises(FileNotFoundError, match=r"lacks the component folder\(s\) vae/ \(pass --vae"):
        load_any_model(folder)
    model = load_any_model(folder, vae=sd_folders["sd1"] / "vae").model
    torch.testing.assert_close(generate(model), generate(loaded["sd1"]), rtol=0, atol=0)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ValueError, match="is not a readable safetensors file.*truncated"):
        load_any_model(folder, vae=sd_folders["sd1"] / "vae")


def test_cli_reports_bad_checkpoints(tmp_path, tensors):
    path = write(tmp_path, {k: v for k, v in tensors.items() if not k.startswith("first_stage_model.")})
    result = CliRunner().invoke(main, ["generate", "a star", "--model", str(path), "--tokenizer", str(TOKENIZER)])
    assert result.exit_code == 2 and "no VAE" in result.output and "--vae" in result.output
