"""The package as a user gets it, built and installed once per test run
(``install.py``): from ``SIPWARDEN_TEST_INSTALL`` (scripts/test.sh), else
by this session itself in a directory removed at its end; and the
namespace it runs in (``site.py``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import need
from ..edge.harness import registrar_thread
from ..edge.netns import namespace
from .install import Installed, build_and_install
from .site import PORT, Site


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


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """A namespace of this module's, the registrar on our end of it. SIP's
    5060 is above 1024, the default first unprivileged port; here, as on a
    host that raised it, 5060 is privileged, so binding it needs
    CAP_NET_BIND_SERVICE (which the unit gives for ports below 1024)."""
    with namespace() as ns, registrar_thread(ns.outside) as (backend_port, _seen):
        subprocess.run(
            ns.command("sysctl", "-qw", f"net.ipv4.ip_unprivileged_port_start={PORT + 1}"),
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip
        yield Site(ns, backend_port)
