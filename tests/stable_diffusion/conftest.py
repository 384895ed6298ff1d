"""Tiny diffusers pipelines saved once per session (the slow part: building and saving them)."""

from __future__ import annotations

import pytest

from tests.stable_diffusion.tiny import save_tiny_pipeline


@pytest.fixture(scope="session")
def sd_folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny_sd")
    return {family: save_tiny_pipeline(family, root / family) for family in ("sd1", "sd2", "sdxl", "sd1-inpaint")}


@pytest.fixture(scope="session")
def loaded(sd_folders) -> dict:
    from unstatic.models.stable_diffusion import load_any_model

    return {family: load_any_model(folder).model for family, folder in sd_folders.items()}
