"""Build the package once (sdist and wheel, ``python -m build``) and
install the wheel into a fresh venv with its dependencies, in a directory
every user may read (the capability tests run it as ``nobody``).

``scripts/test.sh`` runs ``python -m tests.package.install DIR`` once
before pytest and hands DIR to every worker in ``SIPWARDEN_TEST_INSTALL``;
run alone, the tests' session fixture (``conftest.py``) does it itself.
Bounds: one build (about 10 s) and one ``pip install`` (its dependencies
from pip's cache or index), each with a time limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: pyproject.toml, setup.py, src/
BUILD_TIMEOUT = 300.0
INSTALL_TIMEOUT = 600.0


@dataclass(frozen=True)
class Installed:
    home: Path  # world-readable: dist/ (the sdist and the wheel), venv/

    @property
    def dist(self) -> Path:
        return self.home / "dist"

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def sdist(self) -> Path:
        return next(self.dist.glob("sipwarden-*.tar.gz"))

    @property
    def wheel(self) -> Path:
        return next(self.dist.glob("sipwarden-*.whl"))

    @property
    def sipwarden(self) -> Path:
        return self.venv / "bin" / "sipwarden"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def ready(self) -> bool:
        return self.sipwarden.exists() and any(self.dist.glob("sipwarden-*.whl"))


def clean_env() -> dict[str, str]:
    """This environment without what points Python at the checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SIPWARDEN_PURE_PYTHON")}


def _run(argv: list[str], timeout: float) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=clean_env())
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


def build_and_install(home: Path) -> Installed:
    """The sdist and wheel in ``home/dist``, the wheel installed in ``home/venv``."""
    found = Installed(home)
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    # isolated, as a user's build: setuptools from [build-system] requires
    _run([sys.executable, "-m", "build", "--outdir", str(found.dist), str(ROOT)], BUILD_TIMEOUT)
    _run([sys.executable, "-m", "venv", str(found.venv)], INSTALL_TIMEOUT)
    _run(
        [str(found.venv / "bin" / "pip"), "install", "-q", "--no-input", str(found.wheel)],
        INSTALL_TIMEOUT,
    )
    return found


if __name__ == "__main__":
    build_and_install(Path(sys.argv[1]))
    print(f"sipwarden built and installed under {sys.argv[1]}")
