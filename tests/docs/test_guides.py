"""The guides in docs/ say what works: every config block in them is loaded.

- ```toml: with sipwarden's own loader (``load_config``) and its policy
  built, as `run` does; a block whose first line is ``# fragment`` is part of
  a file, loaded on a minimal base. Keys of the contract that this build
  does not know yet (``[host]``, ``[policy] mode``: merged from other
  branches) are checked against DESIGN.md's contract and set aside.
- ```ini (Asterisk): every line a section, an option, an ``#include`` or a
  comment, read by configparser as Asterisk's own reader would (repeated
  keys, ``=>``, templates).
- ```xml (FreeSWITCH): xml.etree parses it (a fragment inside a root).
- ```cfg (Kamailio): ``kamailio -c`` accepts it (a fragment with a route).

And every PBX guide covers the four ways of running sipwarden.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from sipwarden.config import Config, PolicyConfig, config_from_dict, load_config
from sipwarden.policy import build_policy

from ..conftest import need

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = [
    "guides.md",
    "asterisk.md",
    "freepbx.md",
    "freeswitch.md",
    "kamailio.md",
    "rtp-and-nat.md",
    "trunks.md",
    "upgrading.md",
    "uninstalling.md",
]
PBX_GUIDES = ["asterisk.md", "freepbx.md", "freeswitch.md", "kamailio.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
HOST_CONTRACT = {"enabled": bool, "ports": list, "tls_ports": list, "fail": str}
_ASTERISK_LINE = re.compile(
    r"^\s*(?:;.*|#(?:try)?include\s+\S+|\[[^\]]+\](?:\([^)]*\))?|[A-Za-z0-9_.-]+\s*=>?.*)?$"
)


def blocks(language: str) -> list[Any]:
    out = []
    for name in GUIDES:
        text = (DOCS / name).read_text()
        for i, m in enumerate(FENCE.finditer(text)):
            if m[1] == language:
                line = text[: m.start()].count("\n") + 1
                out.append(pytest.param(m[2], id=f"{name}:{line}:{i}"))
    return out


def fragment(text: str, mark: str) -> bool:
    return text.lstrip().startswith(mark)


def test_the_guides_exist_and_each_pbx_guide_covers_every_mode() -> None:
    for name in GUIDES:
        assert (DOCS / name).is_file(), name
    for name in PBX_GUIDES:
        text = (DOCS / name).read_text()
        for heading in (
            "## Edge on the same machine",
            "## Edge on another machine",
            "## Host mode",
            "## Logwatch",
        ):
            assert heading in text, f"{name}: no {heading!r}"
        assert "```toml" in text
    assert "nft delete table inet sipwarden" in (DOCS / "uninstalling.md").read_text()


def _set_aside_pending(data: dict[str, Any]) -> bool:
    """Check and remove the contract's keys this build does not know yet;
    True if any were."""
    found = False
    if "host" in data and "host" not in Config.model_fields:
        host = data.pop("host")
        assert set(host) <= set(HOST_CONTRACT), host
        for key, kind in HOST_CONTRACT.items():
            assert key not in host or isinstance(host[key], kind), (key, host[key])
        assert host.get("fail", "open") in ("open", "closed")
        found = True
    policy = data.get("policy", {})
    if "mode" in policy and "mode" not in PolicyConfig.model_fields:
        assert policy.pop("mode") in ("enforce", "monitor")
        found = True
    return found


@pytest.mark.parametrize("text", blocks("toml"))
def test_toml_blocks_load(text: str, tmp_path: Path) -> None:
    if fragment(text, "# fragment") and "[storage]" not in text:
        text = '[storage]\npath = "sipwarden.db"\n' + text  # the minimal base
    data = tomllib.loads(text)
    if _set_aside_pending(data):
        config = config_from_dict(data)
    else:
        path = tmp_path / "guide.toml"
        path.write_text(text)
        config = load_config(path)
    # a trunk's host name resolved by a stand-in: no DNS in the tests
    build_policy(config, resolve=lambda name: ["198.51.100.99"])


@pytest.mark.parametrize("text", blocks("ini"))
def test_asterisk_blocks_parse(text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        assert _ASTERISK_LINE.match(line), f"line {number}: {line!r}"
    parser = configparser.ConfigParser(
        delimiters=("=>", "="),
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";",),
        strict=False,  # Asterisk repeats keys (local_net) and section names (101: auth, aor)
        interpolation=None,
    )
    parser.read_string(text)
    assert parser.sections(), "no section"
    for section in parser.sections():
        assert parser.items(section), f"[{section}] is empty"


@pytest.mark.parametrize("text", blocks("xml"))
def test_freeswitch_blocks_parse(text: str) -> None:
    if fragment(text, "<!-- fragment"):
        text = f"<fragment>{text}</fragment>"
    root = ET.fromstring(text)
    assert list(root.iter("param")) or list(root.iter("X-PRE-PROCESS"))


@pytest.mark.parametrize("text", blocks("cfg"))
def test_kamailio_blocks_pass_kamailio_c(text: str, tmp_path: Path) -> None:
    need(shutil.which("kamailio") is not None, "kamailio is not installed")
    if fragment(text, "# fragment"):
        text = "#!KAMAILIO\n" + text
        if "request_route" not in text:
            text += "\nrequest_route {\n    exit;\n}\n"
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(text)
    done = subprocess.run(
        ["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr[-3000:]
