"""`unstatic serve`: the HTTP API (AUTOMATIC1111-compatible endpoints and a job queue) and the web page."""

from __future__ import annotations

import click  # noqa: F401

from unstatic.cli.app import main  # noqa: F401
