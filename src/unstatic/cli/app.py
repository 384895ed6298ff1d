"""The ``unstatic`` command group; each command lives in its own module of this package."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="unstatic")
def main() -> None:
    """unstatic: generate images by removing noise step by step."""
