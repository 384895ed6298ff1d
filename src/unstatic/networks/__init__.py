"""Denoising networks (U-Net, VAE) and the layers they share.

Parameter names follow diffusers' layout so diffusers checkpoints load by name (see ``weights.py``).
"""
