"""``[[alerts]]``: each target's keys by its type; errors name the key, the
value and what is valid, and never show a secret; names default to the
type and index; files are found next to the config."""

from __future__ import annotations

import pytest

from sipwarden.config import ConfigError, config_from_dict, load_config

SECRET = "s3cret-hmac-key-0123456789"
HOOK = {"type": "webhook", "url": "https://hooks.example.com/x", "secret": SECRET}
MAIL = {
    "type": "email",
    "host": "smtp.example.com",
    "from": "a@example.com",
    "to": ["b@example.com"],
}


def error(alerts: list[dict]) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"alerts": alerts})
    return str(caught.value)


@pytest.mark.parametrize(
    ("alerts", "words"),
    [
        ([{"type": "sms"}], ["alerts[0].type", "'sms'", "'webhook', 'email' or 'syslog'"]),
        ([{**HOOK, "kinds": ["ban", "bans"]}], ["alerts[0].kinds[1]", "'bans'", "'login-failed'"]),
        ([{**HOOK, "url": "ftp://x"}], ["alerts[0].url", "'ftp://x'", "https://"]),
        ([{**HOOK, "min_interval": "soon"}], ["alerts[0].min_interval", "'soon'", "10m"]),
        ([{"type": "webhook", "url": "https://x"}], ["alerts[0]", "secret, secret_file or secret_env"]),
        ([{**HOOK, "secret_env": "X"}], ["exactly one of", "['secret', 'secret_env']"]),
        ([{**HOOK, "secret_env": "not a name"}], ["alerts[0].secret_env", "environment variable"]),
        ([{**HOOK, "host": "smtp"}], ["alerts[0]", "host is not a key of a webhook", "url, secret"]),
        ([{**MAIL, "to": ["ok@example.com", "nobody"]}], ["alerts[0].to", "'nobody'", "mail address"]),
        ([{**MAIL, "from": "me"}], ["alerts[0].from", "'me'", "a mail address"]),
        ([{**MAIL, "tls": True, "starttls": True}], ["alerts[0]", "not both"]),
        ([{**MAIL, "user": "u"}], ["alerts[0]", "both user and password"]),
        ([{**MAIL, "user": "u", "password": "p"}], ["smtp.example.com", "starttls = true"]),
        ([{**MAIL, "port": 0}], ["alerts[0].port", "0", "greater than or equal to 1"]),
        ([{"type": "syslog"}], ["alerts[0]", "needs address"]),
        ([{"type": "syslog", "address": "sctp:h:1"}], ["alerts[0].address", "'sctp:h:1'", "udp:HOST:PORT"]),
        ([{"type": "syslog", "address": "udp:h:0"}], ["alerts[0].address", "from 1 to 65535"]),
        ([{"type": "syslog", "address": "/dev/log", "facility": "local9"}], ["'local9'", "'local7'"]),
        ([HOOK, {**HOOK, "name": "webhook-0"}], ["alerts", "entry [1]", "'webhook-0'", "unique"]),
    ],
)  # fmt: skip
def test_errors_name_the_key_the_value_and_what_is_valid(alerts, words):
    text = error(alerts)
    for word in words:
        assert word in text, (word, text)
    assert "\n" not in text  # one line


def test_secrets_are_never_shown():
    for alerts in (
        [{**HOOK, "secret": "short"}],
        [{**HOOK, "secret": "   "}],
        [{**MAIL, "user": "u", "password": "hunter2-password"}],  # refused: plain SMTP
        [HOOK, {**HOOK, "name": "webhook-0"}],  # the list of tables is not shown
    ):
        text = error(alerts)
        assert SECRET not in text and "short" not in text and "hunter2" not in text, text
    assert "5 characters, not shown" in error([{**HOOK, "secret": "short"}])
    assert SECRET not in repr(config_from_dict({"alerts": [HOOK]}))


def test_defaults_and_names():
    config = config_from_dict(
        {
            "alerts": [
                HOOK,
                {**MAIL, "starttls": True, "name": "night-shift"},
                {"type": "syslog", "address": "udp:[2001:db8::1]:514", "min_interval": "1m"},
            ]
        }
    )
    hook, mail, log = config.alerts
    assert (hook.name, mail.name, log.name) == ("webhook-0", "night-shift", "syslog-2")
    assert hook.kinds == ["ban", "finding", "health"] and hook.min_interval == 300.0
    assert mail.smtp_port == 587 and mail.sender == "a@example.com" and log.min_interval == 60.0
    assert config_from_dict({}).alerts == []


def test_files_are_found_next_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "sipwarden.toml"
    path.write_text(
        '[[alerts]]\ntype = "webhook"\nurl = "https://h.example.com/"\nsecret_file = "hook.key"\n'
        '[[alerts]]\ntype = "email"\nhost = "127.0.0.1"\nfrom = "a@example.com"\n'
        'to = ["b@example.com"]\nuser = "u"\npassword_file = "pw"\nca_file = "ca.pem"\n'
    )
    hook, mail = load_config(path).alerts
    assert hook.secret_file == tmp_path / "sub" / "hook.key"
    assert (
        mail.password_file == tmp_path / "sub" / "pw"
        and mail.ca_file == tmp_path / "sub" / "ca.pem"
    )
