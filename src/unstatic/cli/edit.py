"""`unstatic img2img`, `unstatic inpaint`, `unstatic outpaint`: image editing through the editing pipelines."""

from __future__ import annotations

import click  # noqa: F401

from unstatic.cli.app import main  # noqa: F401
