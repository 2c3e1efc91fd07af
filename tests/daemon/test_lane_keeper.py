"""The lane keeper in-process, with an enforcer that records its calls:
logins reach the kernel in batches, what the kernel refused is reported
again, worker 0 keeps the trusted sets in step and reads the counters.
The real kernel is in tests/enforce/test_lane.py, the real daemon under a
flood in tests/edge/test_flood.py."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from sipwarden.config import config_from_dict
from sipwarden.daemon.lane import BATCH_DELAY, LaneKeeper, lane_settings, start_lane
from sipwarden.enforce import NullEnforcer
from sipwarden.policy.known_good import KnownGood
from sipwarden.values import Network


class Recording(NullEnforcer):
    def __init__(self, refuse: Sequence[str] = ()) -> None:
        super().__init__()
        self.batches: list[dict[str, float]] = []
        self.trusted: list[list[Network]] = []
        self.refuse = set(refuse)

    async def add_known_good(self, entries: Mapping[str, float], now: float) -> list[str]:
        self.batches.append(dict(entries))
        return [h for h in entries if h in self.refuse]

    async def load_trusted(self, trusted: Sequence[Network]) -> None:
        self.trusted.append(list(trusted))

    async def lane_counters(self) -> dict[str, int]:
        return {"good": 7, "total-dropped": 1000}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_logins_of_the_moment_reach_the_kernel_in_one_batch():
    good = KnownGood(timeout=600)
    kernel = Recording(refuse=["192.0.2.66"])
    keeper = LaneKeeper(good, kernel, clock=lambda: 1000.0)

    async def scenario() -> None:
        await keeper.start()
        for i in range(40):  # phones booting together
            good.logged_in(f"192.0.2.{i}", 1000.0)
            await asyncio.sleep(0)
        good.logged_in("192.0.2.66", 1000.0)
        await asyncio.sleep(BATCH_DELAY + 0.2)
        assert len(kernel.batches) == 1 and len(kernel.batches[0]) == 41
        good.logged_in("192.0.2.1", 1001.0)  # known already: nothing to send
        good.logged_in("192.0.2.66", 1001.0)  # refused last time: sent again
        good.logged_in("192.0.2.100", 1001.0)  # pending when the keeper stops: sent
        await keeper.stop()

    run(scenario())
    assert kernel.batches[0]["192.0.2.5"] == 1600.0  # the entry ends a timeout later
    assert kernel.batches[1:] == [{"192.0.2.66": 1601.0, "192.0.2.100": 1601.0}]
    status = keeper.status()
    assert status["pushed"] == 41 and status["refused"] == 2 and status["batches"] == 2
    assert status["known-good"] == 41 and "kernel-good" not in status  # not worker 0


def test_worker_0_keeps_the_trusted_networks_in_step_and_reads_the_counters():
    trusted = [ipaddress.ip_network("198.51.100.7")]
    kernel = Recording()
    keeper = LaneKeeper(KnownGood(), kernel, trusted=lambda: list(trusted), read_every=0.05)

    async def scenario() -> None:
        await keeper.start()
        await asyncio.sleep(0.2)
        assert kernel.trusted == []  # start_lane loaded them: nothing changed since
        trusted.append(ipaddress.ip_network("192.0.2.0/28"))  # a reload added a peer
        await asyncio.sleep(0.2)
        await keeper.stop()

    run(scenario())
    assert kernel.trusted == [[ipaddress.ip_network(n) for n in ("198.51.100.7", "192.0.2.0/28")]]
    status = keeper.status()
    assert status["kernel-good"] == 7 and status["kernel-total-dropped"] == 1000


def test_without_nftables_start_says_there_is_no_lane_in_one_line(caplog: pytest.LogCaptureFixture):
    config = config_from_dict({"firewall": {"enforcer": "none"}})
    assert lane_settings(config) is None
    with caplog.at_level(logging.INFO, logger="sipwarden.lane"):
        run(start_lane(config, []))
    (record,) = caplog.records
    assert record.levelno == logging.INFO  # the default enforcer: said, not warned of
    assert record.getMessage().startswith('no kernel lane: [firewall] enforcer = "none"')


def test_the_settings_come_from_the_lane_config_and_the_edges_listeners():
    config = config_from_dict(
        {
            "edge": {
                "listen": ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060", "tls:0.0.0.0:5061"],
                "workers": 2,
                "tls_certificate": "c.pem",
                "tls_key": "k.pem",
            },
            "firewall": {"enforcer": "nftables", "scope": "all", "lane": {"prefix_rate": 50}},
        }
    )
    settings = lane_settings(config)
    assert settings is not None
    # the SIP ports even with scope "all" (the bans' scope); tls is tcp
    assert settings.ports == (("tcp", 5060), ("tcp", 5061), ("udp", 5060))
    assert settings.prefix_rate == 50
    assert settings.total_rate == 2000  # absent: 1,000 a second per edge worker
    assert (settings.prefix_v4, settings.prefix_v6) == (24, 48)
    assert settings.known_good_timeout == 7200
    off = config_from_dict({"firewall": {"enforcer": "nftables", "lane": {"enabled": False}}})
    assert lane_settings(off) is None
