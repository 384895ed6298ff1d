"""``unstatic serve``: an AUTOMATIC1111-compatible HTTP API, a job queue with per-job progress and
cancellation, and a web page, over models loaded once and kept warm (see docs/server.md)."""

from unstatic.server.app import create_app

__all__ = ["create_app"]
