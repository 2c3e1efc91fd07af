"""The pure core imports no I/O library (issue 13; ``docs/architecture.md``).

Every module of ``sip``, ``proxy``, ``policy``, ``intel``, ``observe`` and the ``values``
leaf is imported in a fresh interpreter in which importing an I/O library
fails, so an import anywhere in the chain (ours or a dependency's) breaks
this test. import-linter checks the same statically (``.importlinter``);
this one also catches what a dependency drags in at run time.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import sipwarden

PURE = ("sip", "proxy", "policy", "intel", "observe", "deception")
BLOCKED = (
    "asyncio",
    "socket",
    "sqlite3",
    "subprocess",
    "httpx",
    "aiohttp",
    "rich",
    "click",
    "dpkt",
    "uvloop",
    "maxminddb",
    "selectors",
    "ssl",
)

# Run in the child: a finder in front of all others refuses the blocked
# names, then every pure module is imported; the failures are printed as JSON.
CHILD = """
import importlib, importlib.abc, json, sys
blocked = set(sys.argv[1].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"blocked I/O library: {name}")
        return None
for name in list(sys.modules):
    if name.partition(".")[0] in blocked:
        del sys.modules[name]
sys.meta_path.insert(0, Refuse())
failed = {}
for module in sys.argv[2].split(","):
    try:
        importlib.import_module(module)
    except ImportError as exc:
        failed[module] = str(exc)
print(json.dumps(failed))
"""


def pure_modules() -> list[str]:
    root = Path(sipwarden.__file__).parent
    names = ["sipwarden.values"]
    for package in PURE:
        names.append(f"sipwarden.{package}")
        found = pkgutil.walk_packages([str(root / package)], prefix=f"sipwarden.{package}.")
        names.extend(info.name for info in found)
    return names


def test_the_pure_core_lists_its_modules() -> None:
    names = pure_modules()
    # the walk found the packages' modules, not just their doors
    assert {"sipwarden.sip.peek", "sipwarden.policy.bans", "sipwarden.intel.index"} <= set(names)
    assert "sipwarden.proxy.splice" in names


def test_the_pure_core_imports_no_io_library() -> None:
    modules = pure_modules()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(BLOCKED), ",".join(modules)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    failed = json.loads(done.stdout)
    assert failed == {}, "\n".join(f"{m}: {why}" for m, why in failed.items())


def test_the_blocker_blocks() -> None:
    """A module that imports a blocked library is reported (the check can fail)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(BLOCKED), "sipwarden.fetch.dns,sipwarden.values"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    failed = json.loads(done.stdout)
    assert set(failed) == {"sipwarden.fetch.dns"} and "socket" in failed["sipwarden.fetch.dns"]
