"""The optional C twins of the hot-path functions (see ``_speedups.c``).

``SPEEDUPS`` is the compiled module, or None when it was not built (no
compiler) or ``SIPWARDEN_PURE_PYTHON=1`` is set; callers then use the
pure-Python twins, which give the same results.
"""

from __future__ import annotations

import os
from types import ModuleType

from .names import COMPACT

SPEEDUPS: ModuleType | None = None
if os.environ.get("SIPWARDEN_PURE_PYTHON", "") in ("", "0"):
    try:
        from . import _speedups as SPEEDUPS  # type: ignore[attr-defined,no-redef]
    except ImportError:  # pragma: no cover - depends on the build
        SPEEDUPS = None

if SPEEDUPS is not None:
    SPEEDUPS.configure(COMPACT)
