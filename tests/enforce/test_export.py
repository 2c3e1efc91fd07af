"""Exporting the bans: each format alone, the text read back by sipwarden's
own feed parser, and the nft script loaded by the real nft inside a network
namespace the test creates (twice: it must be idempotent)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwarden.enforce.export import as_json, as_nft, as_text, check_name, export
from sipwarden.intel.feeds import parse_feed
from sipwarden.intel.index import parse_target

from ..conftest import need
from ..edge.netns import Namespace, namespace

NAN = float("nan")
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def row(ip: str, seconds: float | None = None, created: float = NOW - 60) -> dict[str, Any]:
    """A ban as `bans list --json` prints it; ``seconds`` left, None: permanent."""
    return {
        "ip": ip,
        "reason": "test",
        "detector": "operator",
        "created_at": created,
        "expires_at": None if seconds is None else NOW + seconds,
        "offence": 1,
    }


BANS = [
    row("192.0.2.7", 600),
    row("198.51.100.0/24"),
    row("2001:db8::/48", 3600.5),
    row("203.0.113.9", -1),  # ended a second ago
    row("2001:db9:0:0:0:0:0:9"),
]


def nft_elements(script: str) -> dict[str, list[str]]:
    """set name -> its elements, as the script's `add element` lines give them."""
    found: dict[str, list[str]] = {}
    for m in re.finditer(r"^add element inet \w+ (\w+) \{ (.*) \}$", script, re.M):
        found.setdefault(m.group(1), []).extend(m.group(2).split(", "))
    return found


# ------------------------------------------------------------------- text


def test_text_lists_every_ban_in_force_under_a_header():
    assert as_text(BANS, NOW) == (
        "# sipwarden bans, 2023-11-14T22:13:20Z, 4 entries\n"
        "192.0.2.7\n198.51.100.0/24\n2001:db8::/48\n2001:db9::9\n"
    )


def test_text_reads_back_through_parse_feed():
    parsed = parse_feed(as_text(BANS, NOW))
    assert parsed.entries == ("192.0.2.7", "198.51.100.0/24", "2001:db8::/48", "2001:db9::9")
    assert (parsed.bad, parsed.duplicates) == (0, 0)


@given(
    st.lists(
        st.one_of(
            st.ip_addresses().map(str),
            st.builds(
                lambda a, n: f"{a}/{n % (33 if a.version == 4 else 129)}",
                st.ip_addresses(),
                st.integers(0, 128),
            ),
        ),
        max_size=30,
    ),
    st.lists(st.one_of(st.none(), st.floats(-100, 1e9)), min_size=30, max_size=30),
)
def test_text_round_trip_gives_the_bans_targets(targets: list[str], lengths: list):
    bans = [row(t, s) for t, s in zip(targets, lengths, strict=False)]
    wanted = [parse_target(b["ip"]).spelling for b in bans if b["expires_at"] is None]
    wanted += [parse_target(b["ip"]).spelling for b in bans if (b["expires_at"] or 0) > NOW]
    text = as_text(bans, NOW)
    parsed = parse_feed(text)
    assert set(parsed.entries) == set(wanted)
    assert parsed.bad == 0 and parsed.duplicates == 0
    assert f", {len(parsed.entries)} entries\n" in text.splitlines(keepends=True)[0]
    assert all(line == line.strip() and " " not in line for line in text.splitlines()[1:])


def test_an_empty_text_feed_is_only_its_header():
    text = as_text([], NOW)
    assert text == "# sipwarden bans, 2023-11-14T22:13:20Z, 0 entries\n"
    assert parse_feed(text).entries == ()


# ------------------------------------------------------------------- json


def test_json_is_the_bans_list_array():
    assert as_json(BANS) == json.dumps(BANS, indent=2) + "\n"
    assert json.loads(as_json([])) == []
    assert export("json", BANS, NOW) == as_json(BANS)


# -------------------------------------------------------------------- nft


def test_nft_script_makes_both_sets_and_fills_them():
    script = as_nft(BANS, NOW)
    lines = [line for line in script.splitlines() if not line.startswith("#")]
    assert lines[:5] == [
        "add table inet sipwarden_feed",
        "add set inet sipwarden_feed sipwarden_bans4 { type ipv4_addr; flags interval,timeout; }",
        "flush set inet sipwarden_feed sipwarden_bans4",
        "add set inet sipwarden_feed sipwarden_bans6 { type ipv6_addr; flags interval,timeout; }",
        "flush set inet sipwarden_feed sipwarden_bans6",
    ]
    assert "chain" not in "\n".join(lines)  # the consumer's rules use the sets
    assert script.startswith("# sipwarden bans, 2023-11-14T22:13:20Z, 4 entries\n")
    assert "add rule inet sipwarden_feed input ip saddr @sipwarden_bans4 drop" in script
    # permanent: no timeout; timed: the seconds left, rounded up; ended: absent
    assert nft_elements(script) == {
        "sipwarden_bans4": ["192.0.2.7 timeout 600s", "198.51.100.0/24"],
        "sipwarden_bans6": ["2001:db8::/48 timeout 3601s", "2001:db9::9"],
    }


def test_nft_caps_timeouts_and_keeps_a_targets_longest_ban():
    bans = [
        row("192.0.2.1", 10**10),
        row("192.0.2.2", 60),
        row("192.0.2.2", 120),
        row("192.0.2.3"),
        row("192.0.2.3", 60),
    ]
    assert nft_elements(as_nft(bans, NOW))["sipwarden_bans4"] == [
        "192.0.2.1 timeout 99999999s",
        "192.0.2.2 timeout 120s",
        "192.0.2.3",
    ]
    assert parse_feed(as_text(bans, NOW)).entries == ("192.0.2.1", "192.0.2.2", "192.0.2.3")


def test_a_store_row_an_older_release_let_in_is_left_out_not_a_crash():
    """Scoped IPv6 targets and NaN expiries are refused at entry now; a store
    from before still holds them, and one must not break every export."""
    bans = [row("192.0.2.1", 60), row("fe80::1%eth0", 60), {**row("192.0.2.9"), "expires_at": NAN}]
    assert parse_feed(as_text(bans, NOW)).entries == ("192.0.2.1",)
    assert nft_elements(as_nft(bans, NOW))["sipwarden_bans4"] == ["192.0.2.1 timeout 60s"]


def test_nft_leaves_out_what_a_banned_network_covers():
    bans = [
        row("10.1.0.0/16"),
        row("10.1.2.3", 60),
        row("10.0.0.0/8", 3600),
        row("10.2.0.0/15"),
        row("11.0.0.1"),
        row("2001:db8::/32", 60),
        row("2001:db8:1::/48"),
        row("2001:db8:1::1"),
        row("2001:db9::1"),
    ]
    script = as_nft(bans, NOW)
    assert script.startswith("# sipwarden bans, 2023-11-14T22:13:20Z, 4 entries")
    assert "(5 inside a banned network left out)" in script.splitlines()[0]
    elements = nft_elements(script)
    assert sorted(elements["sipwarden_bans4"]) == ["10.0.0.0/8 timeout 3600s", "11.0.0.1"]
    assert sorted(elements["sipwarden_bans6"]) == ["2001:db8::/32 timeout 60s", "2001:db9::1"]
    assert len(parse_feed(as_text(bans, NOW)).entries) == 9  # a feed keeps them all


def test_nft_puts_at_most_500_elements_in_a_statement():
    bans = [row(f"10.0.{i // 256}.{i % 256}") for i in range(1201)]
    script = as_nft(bans, NOW)
    statements = [line for line in script.splitlines() if line.startswith("add element")]
    assert [len(s.split(", ")) for s in statements] == [500, 500, 201]
    assert len(nft_elements(script)["sipwarden_bans4"]) == 1201


def test_nft_names_are_checked_and_used():
    script = as_nft(BANS, NOW, table="edge_feed", set_prefix="sip")
    assert "add set inet edge_feed sip4 { type ipv4_addr; flags interval,timeout; }" in script
    assert set(nft_elements(script)) == {"sip4", "sip6"}
    for table, set_prefix, error in [
        ("bad-name", "s", "table: 'bad-name' is not an nftables name"),
        ("t", "x; flush ruleset", "set: 'x; flush ruleset' is not an nftables name"),
        ("", "s", "table: '' is not"),
        ("t", "a" * 33, "is not an nftables name"),
        ("1table", "s", "table: '1table'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(error)):
            as_nft(BANS, NOW, table=table, set_prefix=set_prefix)
    assert check_name("a" * 32) == "a" * 32


def test_an_empty_nft_script_only_makes_and_empties_the_sets():
    script = as_nft([], NOW)
    assert "add element" not in script
    assert script.count("flush set ") == 2
    assert export("nft", [], NOW) == script
    assert export("text", [], NOW) == as_text([], NOW)


# -------------------------------------------------------- the real nft


@pytest.fixture
def ns() -> Any:
    need(os.geteuid() == 0, "nftables needs root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    with namespace() as created:
        yield created


def nft(ns: Namespace, *args: str) -> str:
    done = subprocess.run(
        ns.command("nft", *args), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def load(ns: Namespace, tmp_path: Path, script: str) -> None:
    path = tmp_path / "bans.nft"
    path.write_text(script)
    nft(ns, "-f", str(path))


def kernel_set(ns: Namespace, table: str, name: str) -> dict[str, int | None]:
    """The set's elements -> their timeout (None: none), from `nft -j`."""
    listed = json.loads(nft(ns, "-j", "list", "set", "inet", table, name))["nftables"]
    found: dict[str, int | None] = {}
    for item in listed:
        for elem in item.get("set", {}).get("elem", []):
            timeout = None
            if isinstance(elem, dict) and "elem" in elem:
                timeout = elem["elem"].get("timeout")
                elem = elem["elem"]["val"]
            if isinstance(elem, dict):
                elem = f"{elem['prefix']['addr']}/{elem['prefix']['len']}"
            found[elem] = timeout
    return found


def test_the_kernel_takes_the_script_again_and_again(ns: Namespace, tmp_path: Path):
    bans = [
        *BANS,
        row("10.0.0.0/8", 3600),
        row("10.1.0.0/16"),  # inside: left out, else nft refuses the overlap
        row("10.2.3.4"),
        row("192.0.2.64/26"),
        row("192.0.2.128/25"),  # adjacent to the /26: no overlap, both kept
        *(row(f"172.16.{i // 256}.{i % 256}", 600) for i in range(1100)),
    ]
    script = as_nft(bans, NOW)
    load(ns, tmp_path, script)
    v4 = kernel_set(ns, "sipwarden_feed", "sipwarden_bans4")
    v6 = kernel_set(ns, "sipwarden_feed", "sipwarden_bans6")
    assert len(v4) == 1105 and v4["172.16.4.75"] == 600
    assert {k: v for k, v in v4.items() if not k.startswith("172.16.")} == {
        "192.0.2.7": 600,
        "198.51.100.0/24": None,
        "10.0.0.0/8": 3600,
        "192.0.2.64/26": None,
        "192.0.2.128/25": None,
    }
    assert v6 == {"2001:db8::/48": 3601, "2001:db9::9": None}

    # the consumer's own chain, as the script's comment shows it, stays across reloads
    example = [line[4:] for line in script.splitlines() if line.startswith("#   ")]
    load(ns, tmp_path, "\n".join(example) + "\n")
    load(ns, tmp_path, script)
    load(ns, tmp_path, script)
    assert len(kernel_set(ns, "sipwarden_feed", "sipwarden_bans4")) == 1105
    rules = nft(ns, "list", "chain", "inet", "sipwarden_feed", "input")
    assert "ip saddr @sipwarden_bans4 drop" in rules and "ip6 saddr @sipwarden_bans6 drop" in rules

    # fewer bans: the sets hold exactly the new list; none: empty sets
    load(ns, tmp_path, as_nft([row("192.0.2.7")], NOW))
    assert kernel_set(ns, "sipwarden_feed", "sipwarden_bans4") == {"192.0.2.7": None}
    assert kernel_set(ns, "sipwarden_feed", "sipwarden_bans6") == {}
    load(ns, tmp_path, as_nft([], NOW))
    load(ns, tmp_path, as_nft([], NOW))
    assert kernel_set(ns, "sipwarden_feed", "sipwarden_bans4") == {}

    # other names: a table of its own, the first one untouched
    load(ns, tmp_path, as_nft(BANS, NOW, table="other", set_prefix="blocked"))
    assert kernel_set(ns, "other", "blocked6") == {"2001:db8::/48": 3601, "2001:db9::9": None}
    assert "input" in nft(ns, "list", "table", "inet", "sipwarden_feed")
