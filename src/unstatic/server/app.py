"""The FastAPI application: A1111's API, the job API and the web page over one model registry and one job
queue. ``create_app({"name": folder, ...})`` builds it; ``unstatic serve`` runs it with uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from unstatic.server.a1111 import a1111_router
from unstatic.server.auth import AuthMiddleware, make_auth
from unstatic.server.errors import install_error_handlers
from unstatic.server.job_routes import job_router
from unstatic.server.jobs import JobQueue
from unstatic.server.models import ModelRegistry
from unstatic.server.state import ServerState

STATIC = Path(__file__).parent / "static"


def create_app(
    models: Mapping[str, str | Path],
    *,
    queue_size: int = 16,
    api_auth: str | None = None,
    api_tokens: Iterable[str] = (),
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    preload: bool = False,
) -> FastAPI:
    """An app serving ``models`` (name -> model folder; the first is current). ``queue_size`` jobs may wait
    (then 429); ``api_auth`` (``user:pass[,user:pass]``) and ``api_tokens`` enforce credentials when given;
    ``preload`` loads the current model before the first request; ``dtype`` is the models' weights' dtype (see
    ``load_any_model``)."""
    state = ServerState(ModelRegistry(models, device=device, dtype=dtype), JobQueue(max_queued=queue_size))
    if preload:
        state.registry.pipeline()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.queue.stop()

    app = FastAPI(title="unstatic", summary="AUTOMATIC1111-compatible image generation API with a job queue",
                  lifespan=lifespan)
    app.state.server = state
    install_error_handlers(app)
    app.include_router(a1111_router(state))
    app.include_router(job_router(state))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    auth = make_auth(api_auth, api_tokens)
    if auth.enabled:
        app.add_middleware(AuthMiddleware, auth=auth)
    return app
