"""Shared test helpers: where the test data lives, and the CI skip rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
TORTURE = DATA / "torture"
SCANNERS = DATA / "scanners"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip a test on a developer machine when ``condition`` is false; in CI
    (CI=true) fail instead, because CI must run every test."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def read(path: Path) -> bytes:
    return path.read_bytes()
