"""The package as a user gets it, built and installed once per test run
(``install.py``): from ``SIPWARDEN_TEST_INSTALL`` (scripts/test.sh), else
by this session itself in a directory removed at its end."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import need
from .install import Installed, build_and_install


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    given = os.environ.get("SIPWARDEN_TEST_INSTALL")
    if given and Installed(Path(given)).ready():
        yield Installed(Path(given))
        return
    need(importlib.util.find_spec("build") is not None, "PyPI's build is not installed")
    home = Path(tempfile.mkdtemp(prefix="sipwarden-pkg-"))
    try:
        yield build_and_install(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
