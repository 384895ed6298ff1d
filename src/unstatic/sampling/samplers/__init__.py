"""Sampler functions, one family per module; all share the signature
``sample_<name>(denoiser, x, sigmas, *, cond=None, callback=None, noise=None, **options) -> x``.
"""
