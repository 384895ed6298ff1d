"""diffusers-format Stable Diffusion folders: ``model_index.json`` with ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/`` and ``scheduler/`` (SDXL: also ``text_encoder_2/`` and ``tokenizer_2/``). Components load by their
own configs (our U-Net and VAE take diffusers' names as they are; the text encoders and tokenizers through
``transformers``, local files only); the scheduler config becomes our schedule, prediction and default spacing
(:mod:`.scheduler`). SDXL's ``force_zeros_for_empty_prompt`` (``model_index.json``, default true) decides whether
an empty negative prompt is all zeros (:class:`~unstatic.text.sdxl.SDXLTextEncoder`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from unstatic.models.folder import DiffusionModel
from unstatic.models.spec import DiffusionSpec
from unstatic.models.stable_diffusion.architecture import (
    unet_to_diffusers_config,
    vae_to_diffusers_config,
)
from unstatic.models.stable_diffusion.components import (
    check_sd_shaped,
    cpu_state,
    truncated_clip,
)
from unstatic.models.stable_diffusion.scheduler import (
    parse_prediction,
    schedule_from_diffusers,
    schedule_to_diffusers,
)
from unstatic.networks.weights import (
    DIFFUSERS_WEIGHTS_NAME,
    load_diffusers_unet,
    load_diffusers_vae,
)
from unstatic.networks.unet_added import text_embeds_dim
from unstatic.text.clip import CLIPTextEncoder
from unstatic.text.sdxl import NAME as SDXL_TEXT_ENCODER
from unstatic.text.sdxl import SDXLTextEncoder

INDEX_NAME = "model_index.json"
PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
XL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline")
SCHEDULER_CONFIG = "scheduler_config.json"


def load_diffusers_folder(
    folder: str | Path, *, vae: torch.nn.Module | None = None, prediction: str | None = None,
    dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> DiffusionModel:
    """A diffusers Stable Diffusion 1.x/2.x or SDXL folder as a :class:`DiffusionModel`; ``vae`` replaces (or
    stands in for a missing) ``vae/``, ``prediction`` overrides the scheduler config's."""
    folder = Path(folder)
    index = json.loads((folder / INDEX_NAME).read_text())
    kind = index.get("_class_name")
    if kind not in PIPELINES + XL_PIPELINES:
        raise ValueError(f"{folder}: {INDEX_NAME} names {kind!r}; supported: {', '.join(PIPELINES + XL_PIPELINES)}")
    xl = kind in XL_PIPELINES
    needed = ["unet", "text_encoder", "tokenizer", "scheduler"] + (["text_encoder_2", "tokenizer_2"] if xl else [])
    needed += ["vae"] if vae is None else []
    missing = [name for name in needed if not (folder / name).is_dir()]
    if missing:
        hint = " (pass --vae PATH for the VAE)" if "vae" in missing else ""
        raise FileNotFoundError(f"{folder} lacks the component folder(s) {', '.join(f'{m}/' for m in missing)}{hint}")
    unet = load_diffusers_unet(folder / "unet", dtype=dtype, device=device)  # a broken file's error names it
    vae = vae if vae is not None else load_diffusers_vae(folder / "vae", dtype=dtype, device=device)
    scheduler_path = folder / "scheduler" / SCHEDULER_CONFIG
    schedule, predicted, spacing = schedule_from_diffusers(json.loads(scheduler_path.read_text()), str(scheduler_path))
    if xl:
        text_encoder = SDXLTextEncoder.from_folder(folder, device=device or "cpu", torch_dtype=dtype or torch.float32,
                                                   zero_empty_negative=index.get("force_zeros_for_empty_prompt", True))
    else:
        text_encoder = CLIPTextEncoder.from_folders(folder / "text_encoder", folder / "tokenizer", device=device or "cpu",
                                                    torch_dtype=dtype or torch.float32)
    check_text_fits_unet(text_encoder, unet.config, str(folder))
    sample_size = unet.config.sample_size
    spec = DiffusionSpec(
        prediction=predicted, schedule=schedule, image_size=sample_size if isinstance(sample_size, int) else 64,
        channels=unet.config.out_channels, conditioning="text", text_encoder=SDXL_TEXT_ENCODER if xl else "clip",
        text_max_length=text_encoder.max_length, latent=True, default_scheduler=spacing,
    )
    if prediction is not None:
        spec = replace(spec, prediction=parse_prediction(prediction))
    return DiffusionModel(unet, spec, vae, text_encoder)


def check_text_fits_unet(text_encoder, config, source: str) -> None:
    """Raise unless the U-Net reads what the text encoder gives: the context width, and for SDXL the pooled width."""
    if text_encoder.width != config.cross_attention_dim:
        raise ValueError(f"{source}: the text encoder is {text_encoder.width} wide but the U-Net cross-attends to "
                         f"{config.cross_attention_dim}-wide context")
    pooled = isinstance(text_encoder, SDXLTextEncoder)
    if pooled != (config.addition_embed_type == "text_time"):
        raise ValueError(f"{source}: SDXL's two text encoders need a U-Net with addition_embed_type 'text_time' and "
                         "back (got one without the other)")
    if pooled and text_embeds_dim(config) != text_encoder.pooled_width:
        raise ValueError(f"{source}: the U-Net's added conditioning reads a {text_embeds_dim(config)}-wide pooled text "
                         f"embedding plus six size/crop numbers, but the second text encoder projects to "
                         f"{text_encoder.pooled_width} (an SDXL refiner's aesthetic-score conditioning is not supported)")


def save_diffusers_folder(model: DiffusionModel, folder: str | Path) -> Path:
    """Write ``model`` as a diffusers ``StableDiffusionPipeline`` (or ``StableDiffusionXLPipeline``) folder (an
    ``EulerDiscreteScheduler`` config carries the schedule). diffusers has no clip-skip setting, so the text
    encoder is cut to the layers read; SDXL (whose pooled output needs every layer) is written only with clip skip 1."""
    check_sd_shaped(model)
    folder = Path(folder)
    spec, clip = model.spec, model.text_encoder
    xl = isinstance(clip, SDXLTextEncoder)
    if xl and spec.clip_skip != 1:
        raise ValueError(f"an SDXL model with clip_skip={spec.clip_skip} has no diffusers folder form (diffusers reads "
                         "SDXL's penultimate layer, and the pooled output needs the last one)")
    for name, module, config in (("unet", model.network, unet_to_diffusers_config(model.network.config)),
                                 ("vae", model.vae, vae_to_diffusers_config(model.vae.config))):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in cpu_state(module).items()}, folder / name / DIFFUSERS_WEIGHTS_NAME,
                  metadata={"format": "pt"})
    if xl:
        clip.save(folder, settings=False)  # model_index.json carries force_zeros_for_empty_prompt
    else:
        text_model = truncated_clip(clip.model, clip.model.config.num_hidden_layers - spec.clip_skip + 1)
        text_model.save_pretrained(folder / "text_encoder")
        clip.tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "scheduler").mkdir(exist_ok=True)
    scheduler = schedule_to_diffusers(spec.schedule, spec.prediction, spec.default_scheduler)
    (folder / "scheduler" / SCHEDULER_CONFIG).write_text(json.dumps(scheduler, indent=2) + "\n")
    index = {
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", scheduler["_class_name"]],
        "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False,
    }
    if xl:
        index = {**{k: v for k, v in index.items() if k not in ("safety_checker", "requires_safety_checker")},
                 "_class_name": "StableDiffusionXLPipeline", "text_encoder": ["transformers", "CLIPTextModel"],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer_2": ["transformers", "CLIPTokenizer"], "image_encoder": [None, None],
                 "force_zeros_for_empty_prompt": clip.zero_empty_negative}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return folder
