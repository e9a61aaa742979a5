"""Fixtures of the flows_alpha tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ALPHA_DATA_ROOT for the flows, with quick retries."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("ALPHA_DATA_ROOT", str(root))
    monkeypatch.setenv("ALPHA_BACKOFF_SECONDS", "0.01")
    return root
