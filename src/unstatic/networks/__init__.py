"""Denoising networks (U-Net, VAE) and the layers they share.

Parameter names follow diffusers' layout so diffusers checkpoints load by name (see ``weights.py``).
"""

from unstatic.networks.unet import UNet
from unstatic.networks.unet_config import UNetConfig
from unstatic.networks.vae import AutoencoderKL, VAEConfig
from unstatic.networks.weights import load_diffusers_unet, load_diffusers_vae, load_model, save_model

__all__ = ["AutoencoderKL", "UNet", "UNetConfig", "VAEConfig", "load_diffusers_unet", "load_diffusers_vae", "load_model", "save_model"]
