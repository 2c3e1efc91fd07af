"""The fleet over TLS (``rediss://``) against a real redis-server that
speaks TLS only and asks every client for a certificate (the certificates
made here with ``openssl``): two real `sipwarden run` nodes on loopback join
and a ban made on one reaches the other; a node whose ``tls_ca_file`` did
not sign Redis's certificate, and one with no client certificate, refuse to
start with one clear line (not "unreachable": waiting would not mend them).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from sipwarden.config import FleetConfig
from sipwarden.fleet import FleetAuthError, FleetLink

from ..edge.site import eventually
from .loopback import LoopbackNode
from .redis_server import PASSWORD, USER, redis_server

TARGET = "203.0.113.77"


def refusal(node: LoopbackNode) -> str:
    """The one line `sipwarden run` prints when it refuses to start."""
    done = subprocess.run(
        [sys.executable, "-m", "sipwarden.cli", "run", "-c", str(node.config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_nodes_join_over_tls_and_a_ban_propagates_and_a_wrong_ca_refuses_to_start(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path / "redis", tls=True, client_certs=True) as redis:
        assert redis.url.startswith("rediss://")
        a, b = LoopbackNode(tmp_path, "a", redis), LoopbackNode(tmp_path, "b", redis)
        try:
            a.start()
            b.start()
            assert not a.json("status")["fleet"]["degraded"], a.log()
            added = a.cli("bans", "add", TARGET, "--for", "10m", "--reason", "over tls")
            assert added.returncode == 0, added.stderr
            held = eventually(lambda: TARGET in {r["ip"] for r in b.json("bans", "list")}, 15, 0.1)
            assert held, b.log()
            row = next(r for r in b.json("bans", "list") if r["ip"] == TARGET)
            assert row["origin"] == "node-a", row
        finally:
            a.stop()
            b.stop()

        assert redis.certs is not None
        wrong_ca = LoopbackNode(tmp_path, "wrong-ca", redis, tls_ca_file=str(redis.certs.other_ca))
        line = refusal(wrong_ca)
        assert "certificate is not trusted" in line and "tls_ca_file" in line, line
        assert PASSWORD not in line

        no_cert = LoopbackNode(tmp_path, "no-cert", redis)
        no_cert.config.write_text(
            "\n".join(
                x for x in no_cert.config.read_text().splitlines() if not x.startswith("tls_cert")
                and not x.startswith("tls_key")
            )
        )  # fmt: skip
        line = refusal(no_cert)
        assert "client certificate" in line and "tls_cert_file" in line, line

        missing = LoopbackNode(tmp_path, "missing", redis, tls_ca_file=str(tmp_path / "nope.pem"))
        line = refusal(missing)
        assert "tls_ca_file" in line and "nope.pem" in line, line


def test_a_tls_redis_that_is_away_is_unreachable_not_refused(tmp_path: Path) -> None:
    """Trust is only refused when TLS says so: Redis stopped is an outage."""
    with redis_server(tmp_path / "redis", tls=True) as redis:
        assert redis.certs is not None
        config = FleetConfig(
            redis=redis.url, username=USER, password=PASSWORD, tls_ca_file=redis.certs.ca,
            timeout=1.0,
        )  # fmt: skip

        async def scenario() -> None:
            link = FleetLink(config)
            assert await link.connect() is True
            redis.stop()
            assert await link.probe() is False and link.last_error
            redis.start()
            assert await link.probe() is True
            await link.close()
            wrong = FleetLink(config.model_copy(update={"tls_ca_file": redis.certs.other_ca}))  # type: ignore[union-attr]
            with pytest.raises(FleetAuthError, match="not trusted"):
                await wrong.connect()
            await wrong.close()

        asyncio.run(scenario())
