"""[[logwatch.sources]]: errors name the key, the value and what is valid."""

from __future__ import annotations

from typing import Any

import pytest

from sipwarden.config import ConfigError, config_from_dict


def error(logwatch: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"logwatch": logwatch})
    return str(info.value)


def test_a_file_and_a_journal() -> None:
    config = config_from_dict(
        {
            "logwatch": {
                "sources": [
                    {"path": "/var/log/asterisk/messages", "timezone": "Europe/London"},
                    {"journal": "freeswitch.service", "format": "freeswitch"},
                ],
                "max_age": "5m",
            }
        }
    )
    first, second = config.logwatch.sources
    assert first.format == "asterisk" and first.name == "/var/log/asterisk/messages"
    assert second.name == "journal:freeswitch.service"
    assert config.logwatch.max_age == 300.0
    assert config_from_dict({}).logwatch.sources == []  # off by default


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ({}, "give either path"),
        ({"path": "/x", "journal": "a.service"}, "give either path"),
        ({"path": "/x", "format": "sendmail"}, "sendmail"),
        ({"path": "/x", "format": "custom"}, "takes patterns"),
        ({"path": "/x", "patterns": "/p.toml"}, "takes patterns"),
        ({"path": "/x", "journal_files": ["/j"]}, "journal_files are for a journal"),
        ({"path": "/x", "colour": True}, "unknown key"),
    ],
)
def test_bad_sources(source: dict[str, Any], words: str) -> None:
    message = error({"sources": [source]})
    assert "logwatch.sources[0]" in message and words in message


def test_a_log_followed_twice() -> None:
    assert "given twice" in error({"sources": [{"path": "/x"}, {"path": "/x"}]})
