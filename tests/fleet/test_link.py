"""The fleet's link to a real redis-server: the ACL user's password
accepted, a wrong one refused with an error naming the user (never the
password), an unreachable Redis a node that works alone, and back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sipwarden.config import ConfigError, FleetConfig, config_from_dict
from sipwarden.fleet import FleetAuthError, FleetLink, shown_url

from .redis_server import PASSWORD, USER, free_tcp_port, redis_server


def test_the_link_answers_refuses_and_comes_back(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:

        async def scenario() -> None:
            good = FleetLink(
                FleetConfig(redis=server.url, node="a", username=USER, password=PASSWORD)
            )
            assert await good.connect() is True and good.up and good.status()["last-error"] is None
            assert good.key("bans", "stream") == "sipwarden:bans:stream"

            wrong = FleetLink(FleetConfig(redis=server.url, username=USER, password="nope"))
            with pytest.raises(FleetAuthError) as refused:
                await wrong.connect()
            assert f"user {USER!r}" in str(refused.value) and "nope" not in str(refused.value)
            await wrong.close()

            server.stop()  # Redis goes away: the node works alone
            assert await good.probe() is False
            assert not good.up and good.status()["outages"] == 1 and good.last_error
            server.start()
            assert await good.probe() is True and good.up
            await good.close()

        asyncio.run(scenario())


def test_an_unreachable_redis_at_start_is_not_an_error() -> None:
    async def scenario() -> None:
        link = FleetLink(FleetConfig(redis=f"redis://127.0.0.1:{free_tcp_port()}/0", timeout=0.5))
        assert await link.connect() is False
        status = link.status()
        assert status["up"] is False and status["outages"] == 0 and status["last-error"]
        await link.close()

    asyncio.run(scenario())


def test_fleet_config_mistakes_name_the_key() -> None:
    for fleet, words in (
        ({"redis": "http://x"}, ("fleet.redis", "redis://host:port/db")),
        ({"redis": "redis://x", "node": "a b"}, ("fleet.node", "'a b'")),
        ({"redis": "redis://x", "publish_limit": 0}, ("fleet.publish_limit",)),
    ):
        with pytest.raises(ConfigError) as caught:
            config_from_dict({"fleet": fleet})
        assert all(word in str(caught.value) for word in words), caught.value
    assert not config_from_dict({}).fleet.enabled


def test_the_password_is_never_shown() -> None:
    assert shown_url("redis://u:secret@h:6379/0") == "redis://u:***@h:6379/0"
    assert shown_url("rediss://:secret@[::1]:6380/1") == "rediss://:***@[::1]:6380/1"
    assert shown_url("redis://h:6379/0") == "redis://h:6379/0"


def test_the_password_from_a_file_beside_the_config(tmp_path: Path) -> None:
    """``password_file`` is read (relative to the config file); one that
    cannot be read names the key and stops the start."""
    from sipwarden.config import load_config

    with redis_server(tmp_path / "redis") as server:
        (tmp_path / "fleet.password").write_text(PASSWORD + "\n")
        config = tmp_path / "node.toml"
        config.write_text(
            f'[fleet]\nredis = "{server.url}"\nusername = "{USER}"\n'
            'password_file = "fleet.password"\n'
        )
        fleet = load_config(config).fleet
        assert fleet.password_file == tmp_path / "fleet.password"

        async def scenario() -> None:
            link = FleetLink(fleet)
            assert await link.connect() is True
            await link.close()

        asyncio.run(scenario())
        missing = fleet.model_copy(update={"password_file": tmp_path / "nope"})
        with pytest.raises(FleetAuthError, match=r"fleet\.password_file = .*nope.*cannot read"):
            FleetLink(missing)
