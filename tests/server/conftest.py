"""Fixtures for the server tests: tiny model folders (8x8, random weights, so each generation takes
milliseconds), an app over them, a TestClient, and a live uvicorn server on a free loopback port."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.pipelines.tiny_models import tiny_model_folder

pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # TestClient needs it


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory) -> dict[str, Path]:
    """Two models: a class model (prompts: circle, square, star) and an unconditional one."""
    root = tmp_path_factory.mktemp("models")
    return {"tiny": tiny_model_folder(root / "tiny", "class"), "blank": tiny_model_folder(root / "blank", "none")}


@pytest.fixture(scope="module")
def client(model_folders, single_thread):
    from fastapi.testclient import TestClient

    from unstatic.server import create_app

    with TestClient(create_app(model_folders, queue_size=2)) as test_client:
        yield test_client


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode_png(data: str) -> Image.Image:
    assert not data.startswith("data:")  # A1111 clients decode the string as it is
    return Image.open(io.BytesIO(base64.b64decode(data, validate=True)))


def wait_for(condition, timeout: float = 10.0, interval: float = 0.005):
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(model_folders, single_thread) -> Iterator[str]:
    """A real uvicorn server in a thread; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    from unstatic.server import create_app

    config = uvicorn.Config(create_app(model_folders, queue_size=4), host="127.0.0.1", port=free_port(),
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(10)
