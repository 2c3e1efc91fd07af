"""The enforcer factory and the "none" enforcer: no kernel, no root."""

from __future__ import annotations

import asyncio

import pytest

from sipwarden.enforce import NftablesEnforcer, NullEnforcer, make_enforcer
from sipwarden.values import Ban, Change


def test_none_changes_nothing_and_reports_nothing():
    enforcer = make_enforcer("none")
    assert isinstance(enforcer, NullEnforcer) and enforcer.name == "none"
    ban = Ban("192.0.2.7", "test", "test", 0.0, 600.0)

    async def use() -> tuple[dict[str, float | None], int]:
        await enforcer.start([ban], now=1.0)
        await enforcer.apply([Change("add", ban), Change("remove", ban)], now=1.0)
        await enforcer.stop()
        await enforcer.flush()
        return await enforcer.elements(), await enforcer.dropped()

    assert asyncio.run(use()) == ({}, 0)
    assert not enforcer.counters


def test_make_enforcer_kinds_and_ports():
    enforcer = make_enforcer(
        "nftables", table="sw_test", ports=[("udp", 5060), ("TLS", 5061), ("tcp", 5061)]
    )
    assert isinstance(enforcer, NftablesEnforcer) and enforcer.name == "nftables"
    assert enforcer.ports == (("udp", 5060), ("tcp", 5061))  # tls is tcp; once each
    with pytest.raises(ValueError, match="'none', 'nftables'"):
        make_enforcer("iptables")
    with pytest.raises(ValueError, match="unknown transport 'sctp'"):
        make_enforcer("nftables", ports=[("sctp", 5060)])
    with pytest.raises(ValueError, match="not a port number"):
        make_enforcer("nftables", ports=[("udp", 0)])
    with pytest.raises(ValueError, match="not an nftables name"):
        make_enforcer("nftables", table="x; flush ruleset")
