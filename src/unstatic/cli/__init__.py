"""The ``unstatic`` command line: parse, call a pipeline function, report. One module per command family;
importing them registers their commands on :data:`main`."""

from unstatic.cli import compare, convert, demo, edit, evaluate, generate, serve, train  # noqa: F401  (registers the commands)
from unstatic.cli.app import main

__all__ = ["main"]
