"""Errors as JSON: every failure the API reports is ``{"error": short kind, "detail": message}`` with a 4xx
status (5xx only for a bug), so clients can show the message and the server goes on serving."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("unstatic.server")


class ApiError(Exception):
    """A request the server refuses, with the status and message the client gets."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def validation_message(errors: Sequence[Mapping[str, Any]], prefix: str = "") -> tuple[int, str, str]:
    """``(status, error, detail)`` for pydantic's list of errors: 400 for a body that is not JSON at all, 422
    for JSON that does not fit the schema, with each problem as ``field: message``."""
    problems = []
    for item in errors:
        if item.get("type") == "json_invalid":
            reason = (item.get("ctx") or {}).get("error", "")
            return 400, "malformed JSON", f"the request body is not valid JSON: {reason}".rstrip(": ")
        where = prefix + ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return 422, "invalid request", "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    """Route ApiError, schema errors, unknown routes and unexpected failures into the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not found", 405: "method not allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(exc.status_code, kinds.get(exc.status_code, "error"), detail, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error", f"{type(exc).__name__}: {exc}")
