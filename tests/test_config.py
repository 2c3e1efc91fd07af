"""The config model: defaults, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwarden.config import ConfigError, Endpoint, config_from_dict, load_config


def error(data) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return str(info.value)


def test_embedded_defaults_are_loopback():
    cfg = load_config(None)
    assert [str(e) for e in cfg.edge.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert cfg.edge.backend == Endpoint("udp", "127.0.0.1", 5080)


def test_ipv6_and_tls_endpoints(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cfg = config_from_dict(
        {
            "edge": {
                "listen": ["udp:[::1]:5060", "tls:[::1]:5061", "tcp:0.0.0.0:0"],
                "backend": "tcp:[2001:db8::5]:5080",
                "tls_certificate": str(cert),
                "tls_key": str(key),
            }
        }
    )
    assert cfg.edge.listen[0] == Endpoint("udp", "::1", 5060)
    assert str(cfg.edge.listen[1]) == "tls:[::1]:5061"
    assert cfg.edge.backend.family_v6


@pytest.mark.parametrize(
    "data,words",
    [
        ({"edge": {"listen": ["sctp:0.0.0.0:5060"]}}, ["edge.listen[0]", "sctp", "udp:HOST:PORT"]),
        (
            {"edge": {"listen": ["udp:pbx.example.com:5060"]}},
            ["edge.listen[0]", "not an IP address"],
        ),
        ({"edge": {"backend": "udp:127.0.0.1:0"}}, ["edge.backend", "from 1 to 65535"]),
        ({"edge": {"backend": "udp:127.0.0.1:70000"}}, ["edge.backend", "from 1 to 65535"]),
        ({"edge": {"lisen": []}}, ["edge.lisen", "unknown key"]),
        ({"edgy": {}}, ["edgy", "unknown key"]),
        ({"edge": {"listen": [], "workers": 2}}, ["edge.workers = 2", "no edge"]),
        ({"edge": {"listen": ["tls:127.0.0.1:5061"]}}, ["edge", "tls_certificate"]),
        ({"edge": {"max_message_size": 10}}, ["edge.max_message_size", "1024", "got 10"]),
        ({"edge": {"advertise": "sip.example.com;x=1"}}, ["edge.advertise", "not a host name"]),
        (
            {"edge": {"domains": ["pbx.example.com", "bad host"]}},
            ["edge.domains", "[1]", "not a host name"],
        ),
        ({"edge": {"server_header": "x\r\nX-Injected: 1"}}, ["edge.server_header", "one line"]),
        (
            {"firewall": {"lane": {"known_good_timeout": "10s"}}},
            ["firewall.lane.known_good_timeout", "greater than or equal to 60", "got 10"],
        ),
        ({"firewall": {"lane": {"prefix_v4": 33}}}, ["firewall.lane.prefix_v4", "32", "got 33"]),
        ({"firewall": {"lane": {"total_rate": 0}}}, ["firewall.lane.total_rate", "1", "got 0"]),
    ],
)
def test_errors_name_the_key_and_what_is_valid(data, words):
    text = error(data)
    for word in words:
        assert word in text, (word, text)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[edge\nlisten = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text('[edge]\nlisten = ["udp:127.0.0.1:5999"]\nbackend = "udp:127.0.0.1:5998"\n')
    assert load_config(good).edge.listen[0].port == 5999
    typo = tmp_path / "typo.toml"
    typo.write_text('[edge]\nbackend = "udp:127.0.0.1"\n')
    with pytest.raises(ConfigError, match=r"typo\.toml:\nedge\.backend"):
        load_config(typo)


def test_good_hosts_are_accepted():
    cfg = config_from_dict(
        {
            "edge": {
                "advertise": "sip.example.com",
                "domains": ["pbx.example.com", "203.0.113.5", "[2001:db8::5]"],
            }
        }
    )
    assert cfg.edge.advertise == "sip.example.com" and len(cfg.edge.domains) == 3


def test_intel_settings_name_the_key_and_paths_follow_the_config(tmp_path):
    from sipwarden.config import ConfigError, config_from_dict, load_config

    for bad, says in (
        ({"intel": {"geoip": {"allow_countries": ["XA"]}}}, "needs intel.geoip.database"),
        ({"intel": {"geoip": {"database": "x", "allow_countries": ["X1"]}}}, "two-letter"),
        (
            {
                "intel": {
                    "geoip": {"zones": "z", "allow_countries": ["XA"], "deny_countries": ["XB"]}
                }
            },
            "not both",
        ),
        ({"intel": {"feeds": [{"name": "a"}]}}, "give either url or path"),
        ({"intel": {"feeds": [{"name": "a", "url": "ftp://x/"}]}}, "http:// or https://"),
        ({"intel": {"apiban": {"version": "v3"}}}, "intel.apiban.version"),
    ):
        try:
            config_from_dict(bad)
        except ConfigError as exc:
            assert says in str(exc), (bad, str(exc))
        else:
            raise AssertionError(f"accepted {bad}")
    cfg = tmp_path / "sw.toml"
    cfg.write_text(
        '[intel.geoip]\ndatabase = "geo/c.mmdb"\nallow_countries = ["gb"]\n'
        '[[intel.feeds]]\nname = "local"\npath = "bad.txt"\n'
    )
    config = load_config(cfg)
    assert config.intel.geoip.database == tmp_path / "geo/c.mmdb"
    assert config.intel.geoip.allow_countries == ["GB"]
    assert config.intel.feeds[0].path == tmp_path / "bad.txt"


def test_the_readmes_configuration_block_is_a_valid_config() -> None:
    """Every key the README documents exists, with a valid example value."""
    import re
    import tomllib

    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("## Configuration") :]
    found = re.search(r"```toml\n(.*?)```", section, re.S)
    assert found is not None
    config = config_from_dict(tomllib.loads(found.group(1)))
    assert config.intel.feeds[0].name == "voipbl" and config.intel.geoip.allow_countries


def test_feed_headers_are_for_urls_and_one_line_each() -> None:
    assert "headers are for a url" in error(
        {"intel": {"feeds": [{"name": "x", "path": "f", "headers": {"A": "b"}}]}}
    )
    assert "is not a header line" in error(
        {"intel": {"feeds": [{"name": "x", "url": "https://e/", "headers": {"A": "b\r\nX: y"}}]}}
    )


def test_feed_names_are_unique() -> None:
    feed = {"name": "voipbl", "path": "a.txt"}
    assert "intel.feeds: entry [1]: a second feed named 'voipbl'" in error(
        {"intel": {"feeds": [feed, {**feed, "path": "b.txt"}]}}
    )


@pytest.mark.parametrize(
    "data,words",
    [
        (
            {"policy": {"trusted_peers": ["198.51.100.7", "0.0.0.0/0"]}},
            ["policy.trusted_peers", "entry [1], '0.0.0.0/0', is too wide to be trusted", "/8"],
        ),
        (
            {"policy": {"trusted_peers": ["::/0"]}},
            ["policy.trusted_peers", "'::/0', is too wide", "a /32 of IPv6"],
        ),
        (
            {"policy": {"trusted_peers": ["64.0.0.0/2"]}},
            ["policy.trusted_peers", "'64.0.0.0/2', is too wide"],
        ),
        (
            {"bans": {"deny": ["0.0.0.0/0"]}},
            ["bans.deny", "'0.0.0.0/0', is too wide to be always dropped", "10.0.0.0/8"],
        ),
        ({"bans": {"deny": ["2000::/3"]}}, ["bans.deny", "'2000::/3', is too wide"]),
        ({"bans": {"allow": ["0.0.0.0/1"]}}, ["bans.allow", "too wide to be never banned"]),
    ],
)
def test_ranges_that_trust_or_drop_much_of_the_internet_are_refused(data, words):
    text = error(data)
    for word in words:
        assert word in text, (word, text)


def test_the_widest_ranges_allowed_are_a_slash_8_and_a_slash_32():
    cfg = config_from_dict(
        {
            "policy": {"trusted_peers": ["10.0.0.0/8", "2001:db8::/32", "pbx.example.com"]},
            "bans": {"deny": ["203.0.113.0/24", "2001:db8:bad::/48"], "allow": ["10.0.0.0/8"]},
        }
    )
    assert cfg.policy.trusted_peers[0] == "10.0.0.0/8" and cfg.bans.deny[1] == "2001:db8:bad::/48"


@pytest.mark.parametrize(
    "token,words",
    [
        (" ", ["api.token", "a blank token is no secret", "at least 16", "(got ' ')"]),
        ("\t\n", ["api.token", "blank"]),
        ("s3cret", ["api.token", "6 characters is guessable", "at least 16"]),
        ("correct horse battery staple", ["api.token", "one word, without spaces"]),
        ("a" * 20 + "\x00", ["api.token", "control characters"]),
    ],
)
def test_an_api_token_must_be_a_secret(token, words):
    text = error({"api": {"token": token}})
    for word in words:
        assert word in text, (word, text)
    if token.strip():
        assert token not in text  # a secret the operator may use elsewhere is not echoed


def test_a_good_api_token_and_no_token_are_accepted():
    token = "0123456789abcdef0123"
    assert config_from_dict({"api": {"token": token}}).api.token == token
    assert config_from_dict({"api": {"token": ""}}).api.token == ""  # README: no token
    assert config_from_dict({}).api.token is None


def test_a_config_file_that_is_not_utf8(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[edge]\nserver_header = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == (
        f"{bad}: not UTF-8 text (byte 0xe9 at offset 27): save the file as UTF-8"
    )


def test_tls_files_are_found_next_to_the_config(tmp_path):
    """As README says of every path (the TLS files were read from the
    working directory, so a relative one failed under systemd)."""
    path = tmp_path / "edge.toml"
    path.write_text(
        '[edge]\nlisten = ["tls:127.0.0.1:5061"]\ntls_certificate = "tls/cert.pem"\n'
        'tls_key = "tls/key.pem"\nbackend_ca_file = "/etc/ssl/pbx.pem"\n'
    )
    edge = load_config(path).edge
    assert edge.tls_certificate == tmp_path / "tls/cert.pem"
    assert edge.tls_key == tmp_path / "tls/key.pem"
    assert edge.backend_ca_file == Path("/etc/ssl/pbx.pem")


def test_analysis_and_schedule_defaults() -> None:
    cfg = config_from_dict({})
    assert cfg.analysis.enabled and (cfg.analysis.interval, cfg.analysis.window) == (60.0, 900.0)
    assert cfg.analysis.distributed.prefix_v4 == 24 and cfg.analysis.distributed.ban
    assert not cfg.analysis.register_no_success.ban and not cfg.analysis.campaign.ban
    assert not cfg.schedule.configured  # no schedule: never quiet
    assert cfg.schedule.timezone == "UTC" and cfg.schedule.quiet.maxretry == 3


def test_analysis_and_schedule_settings() -> None:
    cfg = config_from_dict(
        {
            "analysis": {
                "interval": "2m",
                "distributed": {"prefix_v4": 22, "bantime": "progressive", "min_sources": 8},
                "campaign": {"ban": True, "bantime": "1d"},
            },
            "schedule": {
                "timezone": "Europe/Berlin",
                "business_hours": "07:30-24:00",
                "weekend": ["SAT", "sunday"],
                "holidays": {"country": "de", "subdivision": "BY"},
                "quiet": {
                    "maxretry": 2,
                    "findtime": "1h",
                    "requests": 40,
                    "methods": {"INVITE": 4},
                },
            },
        }
    )
    assert cfg.analysis.interval == 120.0
    assert cfg.analysis.distributed.bantime == "progressive"
    assert cfg.analysis.campaign.bantime == 86400.0
    assert cfg.schedule.configured and cfg.schedule.weekend == ["sat", "sun"]
    assert cfg.schedule.holidays.country == "DE"
    assert cfg.schedule.quiet.findtime == 3600.0 and cfg.schedule.quiet.methods == {"INVITE": 4}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"schedule": {"quiet_hours": "10pm-6am"}},
            "schedule.quiet_hours: '10pm-6am' is not a span of hours: use \"HH:MM-HH:MM\"",
        ),
        (
            {"schedule": {"business_hours": "08:00-08:00"}},
            "schedule.business_hours: '08:00-08:00': use",
        ),
        ({"schedule": {"weekend": ["fri", "caturday"]}}, "schedule.weekend: entry [1], 'caturday'"),
        ({"schedule": {"holidays": {"country": "DEU"}}}, "schedule.holidays.country: 'DEU' is not"),
        ({"schedule": {"holidays": {"subdivision": "BY"}}}, "subdivision 'BY' needs a country"),
        ({"schedule": {"quiet": {"limits_factor": 2}}}, "schedule.quiet.limits_factor:"),
        (
            {"schedule": {"quiet": {"methods": {"SUBSCRIBE": 2}}}},
            "schedule.quiet.methods: SUBSCRIBE is not limited by day: add it to limits.methods",
        ),
        (
            {"analysis": {"distributed": {"prefix_v4": 16}}, "bans": {"widest_v4": 20}},
            "analysis.distributed.prefix_v4 = 16 is wider than bans.widest_v4 = 20: use 20 to 32",
        ),
        (
            {"analysis": {"distributed": {"bantime": "forever"}}},
            "analysis.distributed.bantime: 'forever' is not a duration",
        ),
        ({"analysis": {"register_no_success": {"share": 0}}}, "analysis.register_no_success.share"),
        ({"analysis": {"rise": {"speed": 2}}}, "analysis.rise.speed: unknown key"),
    ],
)
def test_analysis_and_schedule_errors_name_the_key(data, expected) -> None:
    assert expected in error(data)


def test_deception_defaults_are_the_contracts() -> None:
    deception = config_from_dict({}).deception
    assert (deception.enabled, deception.honeypot, deception.register_ok) == (False, True, True)
    assert deception.crash_scanners is False and deception.server_header == ""
    assert (deception.crash_interval, deception.engaged_for) == (5.0, 600.0)
    cfg = config_from_dict(
        {
            "deception": {
                "enabled": True,
                "crash_scanners": True,
                "rate": 5,
                "burst": 10,
                "total_rate": 100,
                "crash_interval": "3s",
                "engaged_for": "30m",
                "server_header": "PBX",
            }
        }
    )
    assert cfg.deception.enabled and cfg.deception.crash_scanners
    assert (cfg.deception.crash_interval, cfg.deception.engaged_for) == (3.0, 1800.0)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"rate": 0}, ["deception.rate", "got 0", "greater than 0"]),
        ({"burst": 0}, ["deception.burst", "got 0", "greater than or equal to 1"]),
        ({"total_rate": -1}, ["deception.total_rate", "got -1", "greater than 0"]),
        (
            {"crash_interval": "0.5s"},
            ["deception.crash_interval", "0.5", "greater than or equal to 1"],
        ),
        ({"engaged_for": "1s"}, ["deception.engaged_for", "greater than or equal to 10"]),
        ({"server_header": "a\r\nX: y"}, ["deception.server_header", "one line"]),
        ({"enabled": "maybe"}, ["deception.enabled", "maybe", "boolean"]),
        ({"crash_scanner": True}, ["deception.crash_scanner", "unknown key"]),
    ],
)
def test_deception_errors_name_the_key_the_value_and_what_is_valid(data, words) -> None:
    message = error({"deception": data})
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, (word, message)


def test_dialplan_and_tollfraud_defaults_work_without_a_section() -> None:
    cfg = config_from_dict({})
    assert cfg.dialplan.country is None  # no home: international is what is dialled so
    assert cfg.dialplan.international_prefixes == ["00", "011"]
    assert cfg.dialplan.trunk_prefixes == []
    assert cfg.tollfraud.enabled and cfg.tollfraud.walk_prefixes == 2
    assert cfg.tollfraud.bantime == "progressive"
    assert cfg.schedule.quiet.international == "allow"


def test_the_contracts_dialplan() -> None:
    cfg = config_from_dict(
        {
            "dialplan": {"country": "gb", "international_prefixes": ["00", "+"]},
            "tollfraud": {"window": "30m", "international": 5, "bantime": "1d"},
            "schedule": {"quiet": {"international": "drop"}},
        }
    )
    assert cfg.dialplan.country == "GB" and cfg.dialplan.international_prefixes == ["00", "+"]
    assert cfg.tollfraud.window == 1800.0 and cfg.tollfraud.bantime == 86400.0
    assert cfg.schedule.quiet.international == "drop"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"dialplan": {"country": "XX"}},
            "dialplan.country: 'XX' is not a country with a numbering plan: use a two-letter",
        ),
        ({"dialplan": {"country": "GBR"}}, "e.g. GB, US or DE (got 'GBR')"),
        (
            {"dialplan": {"international_prefixes": ["00", "0x1"]}},
            "dialplan.international_prefixes: entry [1], '0x1', is not a prefix: use digits,"
            ' e.g. "00" or "011", or "+"',
        ),
        (
            {"dialplan": {"trunk_prefixes": ["+"]}},
            "dialplan.trunk_prefixes: entry [0], '+', is not a prefix: use digits, e.g. \"9\"",
        ),
        ({"dialplan": {"trunk_prefixes": [""]}}, "dialplan.trunk_prefixes: entry [0], ''"),
        ({"dialplan": {"trunk_prefixes": [9]}}, "dialplan.trunk_prefixes[0]"),
        ({"tollfraud": {"walk_prefixes": 1}}, "tollfraud.walk_prefixes: "),
        ({"tollfraud": {"bantime": "forever"}}, "tollfraud.bantime: 'forever' is not a duration"),
        (
            {"schedule": {"quiet": {"international": "block"}}},
            "schedule.quiet.international: Input should be 'allow', 'drop' or 'alert'",
        ),
    ],
)
def test_dialplan_and_tollfraud_errors_name_the_key(data, expected) -> None:
    assert expected in error(data)
