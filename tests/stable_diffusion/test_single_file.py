"""Original single-file checkpoints. The original-key state dict is built from the diffusers folder's weights by
our documented mapping (``save_single_file``), checked against diffusers' own, independent converters
(``diffusers.loaders.single_file_utils``), and read back with nothing but the tensors (no metadata): the
architecture is inferred from names and shapes, and the model computes exactly what the folder computes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.stable_diffusion.tiny import TOKENIZER, generate, tiny_pipeline
from unstatic.models.stable_diffusion import load_any_model
from unstatic.models.stable_diffusion.single_file import SD_SCHEDULE, save_single_file

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]
convert = pytest.importorskip("diffusers.loaders.single_file_utils")


@pytest.fixture(scope="module")
def foreign_files(loaded, tmp_path_factory) -> dict:
    """Single files as other tools write them: original keys only, no unstatic metadata."""
    root = tmp_path_factory.mktemp("single")
    files = {}
    for family in ("sd1", "sd2"):  # SDXL: test_sdxl.py
        ours = save_single_file(loaded[family], root / f"{family}-ours.safetensors")
        files[family] = root / f"{family}.safetensors"
        save_file(load_file(ours), files[family])
    return files


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_mapping_agrees_with_diffusers_converters(family, foreign_files):
    """diffusers' converters turn our original-key file back into exactly the diffusers weights."""
    pipe = tiny_pipeline(family)  # same seed: the weights saved in the folder
    tensors = load_file(foreign_files[family])
    unet = convert.convert_ldm_unet_checkpoint(tensors, pipe.unet.config)
    vae = convert.convert_ldm_vae_checkpoint(tensors, pipe.vae.config)
    for name, converted, module in (("unet", unet, pipe.unet), ("vae", vae, pipe.vae)):
        expected = module.state_dict()
        assert set(converted) == set(expected), name
        for key, value in expected.items():
            assert torch.equal(converted[key].reshape(value.shape), value), f"{name}: {key}"
    if family == "sd1":
        text = convert.convert_ldm_clip_checkpoint(tensors)
    else:
        text = convert.convert_open_clip_checkpoint(pipe.text_encoder, tensors)
    text = {k.removeprefix("text_model."): v for k, v in text.items()}
    expected = {k: v for k, v in pipe.text_encoder.state_dict().items() if k != "embeddings.position_ids"}
    assert set(expected) <= set(text)
    for key, value in expected.items():
        assert torch.equal(text[key], value), key
    if family == "sd2":  # one extra layer: the identity layer the penultimate rule skips
        layers = {int(k.split(".")[2]) for k in text if k.startswith("encoder.layers.")}
        assert layers == set(range(pipe.text_encoder.config.num_hidden_layers + 1))


def test_sd1_file_generates_what_the_folder_does(loaded, foreign_files):
    model = load_any_model(foreign_files["sd1"], tokenizer=TOKENIZER).model
    folder = loaded["sd1"]
    assert model.spec.schedule == SD_SCHEDULE == folder.spec.schedule
    assert (model.spec.prediction, model.spec.default_scheduler, model.spec.image_size) == ("eps", "ddim_uniform", 64)
    torch.testing.assert_close(generate(model), generate(folder), rtol=0, atol=0)


def test_sd2_file_needs_the_prediction_and_generates_what_the_folder_does(loaded, foreign_files, tmp_path):
    folder = loaded["sd2"]
    guessed = load_any_model(foreign_files["sd2"], tokenizer=TOKENIZER).model
    assert guessed.spec.prediction == "eps"  # v cannot be read off the weights
    model = load_any_model(foreign_files["sd2"], tokenizer=TOKENIZER, prediction="v").model
    assert (model.spec.prediction, model.spec.image_size) == ("v", 96)
    # the schedule (zero terminal SNR, trailing spacing) is the folder's own choice, not in the file: use the folder's
    torch.testing.assert_close(generate(replace(model, spec=folder.spec)), generate(folder), rtol=0, atol=0)
    # the original inference .yaml beside the file says v as well
    sidecar = tmp_path / "sd2.safetensors"
    sidecar.write_bytes(foreign_files["sd2"].read_bytes())
    sidecar.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert load_any_model(sidecar, tokenizer=TOKENIZER).model.spec.prediction == "v"


def test_architecture_is_inferred_from_the_tensors(loaded, foreign_files):
    for family, path in foreign_files.items():
        model = load_any_model(path, tokenizer=TOKENIZER).model
        ours, reference = model.network.state_dict(), loaded[family].network.state_dict()
        assert ours.keys() == reference.keys() and all(torch.equal(ours[k], reference[k]) for k in ours)
        x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([10.0, 500.0]), torch.randn(2, 77, 64)
        with torch.no_grad():
            torch.testing.assert_close(model.network(x, t, context), loaded[family].network(x, t, context), rtol=0, atol=0)
        assert model.vae.config.block_out_channels == loaded[family].vae.config.block_out_channels
        prompts = ["a red star", ""]
        torch.testing.assert_close(model.text_encoder.encode(prompts).context,
                                   loaded[family].text_encoder.encode(prompts).context, rtol=0, atol=0)


def test_pickled_checkpoint_loads_with_weights_only(loaded, foreign_files, tmp_path):
    path = tmp_path / "sd1.ckpt"
    torch.save({"state_dict": load_file(foreign_files["sd1"]), "global_step": 10}, path)
    model = load_any_model(path, tokenizer=TOKENIZER).model
    torch.testing.assert_close(generate(model), generate(loaded["sd1"]), rtol=0, atol=0)
