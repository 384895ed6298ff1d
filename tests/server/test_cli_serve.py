"""`unstatic serve`'s argument handling (the server itself is tested through the app): model lists, the
bundled default when it is missing, bad credentials; and that it hands uvicorn the app and address."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from unstatic.cli import main
from unstatic.cli.serve import parse_models


def test_models_by_name_and_by_folder(model_folders):
    tiny, blank = model_folders["tiny"], model_folders["blank"]
    assert parse_models((f"a={tiny}", str(blank))) == {"a": tiny, "blank": blank}


@pytest.mark.parametrize("entries, message", [
    (("x=/no/such/folder",), "not a model folder"),
    (("=folder",), "NAME=FOLDER"),
])
def test_bad_models_are_usage_errors(entries, message):
    result = CliRunner().invoke(main, ["serve", *sum((["--model", e] for e in entries), [])])
    assert result.exit_code == 2 and message in result.output


def test_same_name_twice_is_refused(model_folders):
    tiny = model_folders["tiny"]
    result = CliRunner().invoke(main, ["serve", "--model", f"a={tiny}", "--model", f"a={tiny}"])
    assert result.exit_code == 2 and "given twice" in result.output


def test_missing_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    from unstatic.models import bundled

    monkeypatch.setattr(bundled, "WEIGHTS_ROOT", tmp_path / "none")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2 and "bundled model is not installed" in result.output


def test_bad_api_auth_is_refused(model_folders):
    result = CliRunner().invoke(main, ["serve", "--model", f"t={model_folders['tiny']}", "--api-auth", "nocolon"])
    assert result.exit_code == 2 and "user:password" in result.output


def test_runs_uvicorn_on_loopback_by_default_and_warns_when_listening_without_auth(model_folders, monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    model = ["--model", f"t={model_folders['tiny']}"]
    result = CliRunner().invoke(main, ["serve", *model, "--port", "7999"])
    assert result.exit_code == 0, result.output
    app, options = calls[-1]
    assert options["host"] == "127.0.0.1" and options["port"] == 7999 and "warning" not in result.output
    assert app.state.server.registry.is_loaded("t")  # loaded before the first request
    result = CliRunner().invoke(main, ["serve", *model, "--listen"])
    assert calls[-1][1]["host"] == "0.0.0.0" and "without --api-auth" in result.output
    result = CliRunner().invoke(main, ["serve", *model, "--listen", "--api-auth", "u:p"])
    assert "warning" not in result.output


def test_dtype_bf16_serves_bf16_weights(model_folders, monkeypatch):
    import torch
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    result = CliRunner().invoke(main, ["serve", "--model", f"t={model_folders['tiny']}", "--dtype", "bf16"])
    assert result.exit_code == 0, result.output
    network = calls[-1].state.server.registry.pipeline("t").model.network
    assert next(network.parameters()).dtype == torch.bfloat16
