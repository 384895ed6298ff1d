"""`unstatic eval`: prompt fidelity, Fréchet distance and diversity of a shapes-world model."""

from __future__ import annotations

import click  # noqa: F401

from unstatic.cli.app import main  # noqa: F401
