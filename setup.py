"""Build the optional C hot paths (sipwarden.sip._speedups, sipwarden.edge._batchio).

Everything else is configured in pyproject.toml. The extension is optional:
without a compiler the pure-Python twins of their functions are used, with the
same results (tests compare them), only slower. A failed compile (no
compiler, no Python headers) is a warning and a pure-Python build;
``SIPWARDEN_PURE_PYTHON=1`` at build time skips the extension on purpose
(as it does at run time: ``sipwarden.sip.accel``). The version is
``sipwarden.__version__`` (pyproject.toml: dynamic).
"""

import os

from setuptools import Extension, setup

PURE = os.environ.get("SIPWARDEN_PURE_PYTHON", "") not in ("", "0")

setup(
    ext_modules=[]
    if PURE
    else [
        Extension(
            "sipwarden.sip._speedups",
            ["src/sipwarden/sip/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        Extension(
            "sipwarden.edge._batchio",
            ["src/sipwarden/edge/_batchio.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
    ]
)
