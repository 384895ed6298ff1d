"""`unstatic compare`: one seed and prompt across samplers and step counts, as a grid."""

from __future__ import annotations

import click  # noqa: F401

from unstatic.cli.app import main  # noqa: F401
