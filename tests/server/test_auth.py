"""Credentials are enforced when given: HTTP basic (--api-auth, the web page included) and bearer tokens (API
only; the page's static files stay public), each answered with a JSON 401 when missing or wrong."""

from __future__ import annotations

import pytest

from unstatic.server.auth import parse_credentials

BASIC = ("alice", "s3cret:with:colons")


@pytest.fixture(scope="module")
def make_client(model_folders):
    from fastapi.testclient import TestClient

    from unstatic.server import create_app

    return lambda **auth: TestClient(create_app(model_folders, **auth))


def test_no_credentials_configured_means_open(make_client):
    assert make_client().get("/sdapi/v1/sd-models").status_code == 200


def test_basic_auth_guards_everything(make_client):
    client = make_client(api_auth="alice:s3cret:with:colons,bob:pw")
    for path in ("/sdapi/v1/sd-models", "/", "/static/app.js", "/v1/models"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/sdapi/v1/sd-models", auth=BASIC).status_code == 200
    assert client.get("/", auth=("bob", "pw")).status_code == 200
    assert client.get("/sdapi/v1/sd-models", auth=("alice", "wrong")).status_code == 401
    assert client.get("/sdapi/v1/sd-models", auth=("mallory", "pw")).status_code == 401
    assert client.get("/sdapi/v1/sd-models", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_tokens_guard_the_api_but_not_the_page(make_client):
    client = make_client(api_tokens=["t0ken"])
    assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
    assert client.get("/sdapi/v1/sd-models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert client.get("/v1/models", auth=("any", "t0ken")).status_code == 401  # no basic users configured


@pytest.mark.parametrize("text, expected", [
    ("a:b", {"a": "b"}), ("a:b,c:d:e", {"a": "b", "c": "d:e"}), (" a:b , ", {"a": "b"}), ("a:", {"a": ""}),
])
def test_parse_credentials(text, expected):
    assert parse_credentials(text) == expected


@pytest.mark.parametrize("text", ["alice", ":pw", "a:b,nocolon"])
def test_parse_credentials_refuses_malformed(text):
    with pytest.raises(ValueError, match="user:password"):
        parse_credentials(text)
