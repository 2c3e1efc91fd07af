"""Build the optional C hot path (sipwarden.sip._speedups).

Everything else is configured in pyproject.toml. The extension is optional:
without a compiler the pure-Python twins of its functions are used, with the
same results (tests compare them), only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sipwarden.sip._speedups",
            ["src/sipwarden/sip/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
