"""Sharing the bans: `sipwarden bans export` with no daemon (the store the
offline `bans add` wrote), and the REST exports of a running daemon, which
agree with `bans list --json` and GET /api/v1/bans."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import httpx

from sipwarden.intel.feeds import parse_feed

from .conftest import free_udp_port, start_edge_process
from .test_bans_daemon import api_url, cli, stop


def test_bans_export_reads_the_store_with_no_daemon(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "bans.db"}"\n'
        f'[control]\nsocket = "{tmp_path / "none.sock"}"\n'
    )
    c = str(config)
    for args in (
        ("203.0.113.0/24", "--for", "1h"),
        ("203.0.113.7", "--permanent"),  # inside the /24
        ("2001:db8::1", "--for", "2h"),
    ):
        added = cli("bans", "add", *args, "-c", c)
        assert added.returncode == 0, added.stderr
    listed = cli("bans", "list", "--json", "-c", c)
    ips = {b["ip"] for b in json.loads(listed.stdout)}
    assert ips == {"203.0.113.0/24", "203.0.113.7", "2001:db8::1"}

    text = cli("bans", "export", "-c", c)
    assert text.returncode == 0, text.stderr
    assert re.match(r"# sipwarden bans, \S+Z, 3 entries\n", text.stdout)
    assert set(parse_feed(text.stdout).entries) == ips
    as_json = cli("bans", "export", "--format", "json", "-c", c)
    assert as_json.stdout == listed.stdout

    out = tmp_path / "out" / "bans.nft"
    out.parent.mkdir()
    nft = ("--format", "nft", "--table", "edge", "--set", "sip")
    written = cli("bans", "export", *nft, "-o", str(out), "-c", c)
    assert written.returncode == 0 and written.stdout == "", written.stderr
    script = out.read_text()
    assert re.search(
        r"add element inet edge sip4 \{ 203\.0\.113\.0/24 timeout 3[56]\d\ds \}", script
    )
    assert "203.0.113.7" not in script  # inside the /24: nft would refuse the overlap
    assert re.search(r"add element inet edge sip6 \{ 2001:db8::1 timeout 7[12]\d\ds \}", script)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # as a plain open() makes it
    out.chmod(0o640)
    again = cli("bans", "export", "--format", "nft", "-o", str(out), "-c", c)
    assert again.returncode == 0, again.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # replaced, the mode kept
    assert "sipwarden_feed" in out.read_text()
    assert os.listdir(out.parent) == ["bans.nft"]  # no temporary file left

    misused = cli("bans", "export", "--table", "edge", "-c", c)
    assert misused.returncode == 2 and "--table and --set are for --format nft" in misused.stderr
    bad = cli("bans", "export", "--format", "nft", "--set", "no-dash", "-c", c)
    assert bad.returncode == 2 and "'no-dash' is not an nftables name" in bad.stderr
    nowhere = cli("bans", "export", "-o", str(tmp_path / "missing" / "bans.txt"), "-c", c)
    assert nowhere.returncode == 1 and "cannot write" in nowhere.stderr


def test_the_api_exports_the_bans_in_three_formats(tmp_path: Path):
    proc, line = start_edge_process(
        tmp_path,
        free_udp_port(),
        free_udp_port(),
        extra='[api]\nlisten = "127.0.0.1:0"\ntoken = "s3cret-0123456789abcdef"\n',
    )
    try:
        api = api_url(line)
        client = httpx.Client(
            base_url=api, headers={"Authorization": "Bearer s3cret-0123456789abcdef"}
        )
        for ban in (
            {"ip": "203.0.113.0/24", "for": "1h"},
            {"ip": "203.0.113.7", "permanent": True},
            {"ip": "198.51.100.9", "permanent": True},
            {"ip": "2001:db8::/32", "for": "2h"},
        ):
            made = client.post("/api/v1/bans", json=ban)
            assert made.status_code == 201, made.text
        bans = client.get("/api/v1/bans").json()
        assert httpx.get(f"{api}/api/v1/export/bans.txt").status_code == 401  # the same token

        text = client.get("/api/v1/export/bans.txt")
        assert text.status_code == 200
        assert text.headers["content-type"] == "text/plain; charset=utf-8"
        assert set(parse_feed(text.text).entries) == {b["ip"] for b in bans}

        as_json = client.get("/api/v1/export/bans.json")
        assert as_json.headers["content-type"].startswith("application/json")
        assert as_json.json() == bans

        nft = client.get("/api/v1/export/bans.nft")
        assert nft.headers["content-type"] == "text/plain; charset=utf-8"
        assert "add table inet sipwarden_feed\n" in nft.text
        v4 = re.search(r"add element inet sipwarden_feed sipwarden_bans4 \{ (.*) \}", nft.text)
        assert v4 is not None
        elements = sorted(v4.group(1).split(", "))  # 203.0.113.7 is inside the /24: left out
        assert len(elements) == 2 and elements[0] == "198.51.100.9"
        assert re.fullmatch(r"203\.0\.113\.0/24 timeout 3[56]\d\ds", elements[1])
        assert re.search(r"sipwarden_bans6 \{ 2001:db8::/32 timeout 7[12]\d\ds \}", nft.text)

        named = client.get("/api/v1/export/bans.nft", params={"table": "edge", "set": "sip"})
        assert "add element inet edge sip4 {" in named.text
        refused = client.get("/api/v1/export/bans.nft", params={"table": "bad-name"})
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("table: 'bad-name' is not an nftables name")
        refused = client.get("/api/v1/export/bans.nft", params={"set": "x y"})
        assert refused.status_code == 400 and refused.json()["error"].startswith("set: ")
    finally:
        stop(proc)
