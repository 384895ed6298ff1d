"""Building and loading the C kernels: cached per machine, and a clean fallback where they cannot be built."""

from __future__ import annotations

import logging
import shutil

import pytest

from unstatic.networks import cpu_kernel


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """native_library() as on first use, building into an empty cache folder."""
    monkeypatch.setenv("UNSTATIC_CACHE", str(tmp_path))
    cpu_kernel.native_library.cache_clear()
    yield tmp_path / "kernels"
    cpu_kernel.native_library.cache_clear()


def test_builds_once_into_the_cache(fresh, monkeypatch):
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler on this machine")
    lib = cpu_kernel.native_library()
    assert lib is not None and lib.unstatic_attention_rows() > 0 and lib.unstatic_attention_keys() > 0
    built = list(fresh.glob("kernels-*.so"))
    assert len(built) == 1 and not list(fresh.glob("*.tmp"))
    # a second process finds it: no compiler run
    cpu_kernel.native_library.cache_clear()
    monkeypatch.setattr(cpu_kernel, "_build", lambda *a: pytest.fail("rebuilt a cached kernel"))
    assert cpu_kernel.native_library() is not None


def test_switched_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv(cpu_kernel.DISABLE_VARIABLE, "0")
    assert cpu_kernel.native_library() is None and not fresh.exists()


def test_a_failing_compiler_falls_back_and_says_why(fresh, monkeypatch, caplog):
    monkeypatch.setenv("CC", "false")  # exists, exits 1
    with caplog.at_level(logging.WARNING, logger=cpu_kernel.__name__):
        assert cpu_kernel.native_library() is None
    assert "could not build the C kernels" in caplog.text
    assert not list(fresh.glob("*"))  # no half-written library left behind


def test_a_missing_compiler_falls_back(fresh, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert cpu_kernel.native_library() is None
