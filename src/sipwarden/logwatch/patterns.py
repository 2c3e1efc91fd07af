"""Log formats: pattern sets that turn one log line into a ``LogRecord``.

What it does: a ``Format`` is a list of rules read from a TOML pattern file
(the shipped ones are in ``formats/``: ``asterisk``, ``asterisk-security``,
``freeswitch``, ``kamailio``; an operator's own is the same schema, see
``formats/README.md``). ``Format.match(line, tz, now)`` strips ANSI colour
codes, tries each rule (a Python regex searched anywhere in the line, so a
syslog or journal prefix and any trailing text after the reason are
accepted) and gives the source address, the kind, the account and the
line's own time (``timestamps.find``), or None.

The kinds are the failure tracker's (``policy.failures``): ``auth.failed``
(a failed login), ``auth.not-found`` (a probe for a user or extension),
``auth.ok`` (a login that succeeded), and ``auth.challenge`` (a challenge:
matched and counted, never a failure).

How it differs from fail2ban's filters: ``<HOST>`` takes IPv4, IPv6, the
``[addr]:port`` and ``addr:port`` forms, and the address is checked and
written one way (``values.canonical``: an IPv4-mapped IPv6 address is its
IPv4 form); a rule can name the account (``(?P<account>...)``) and take its
kind from a captured word (``(?P<event>...)`` and a ``kinds`` table, as
Asterisk's ``SecurityEvent="..."``); a rule may capture its own ``time``
(Asterisk's ``EventTV`` carries its offset); ``hint`` skips the regex on
lines without a literal. Pure: no I/O here but ``load``'s reading of the
pattern file; the timezone is handed in.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, NamedTuple

from ..policy import LOGGED_IN, LOGIN_FAILED, NOT_FOUND
from ..values import canonical
from . import timestamps

CHALLENGE: Final = "auth.challenge"  # a challenge: counted, never a failure
KINDS: Final = (LOGIN_FAILED, NOT_FOUND, LOGGED_IN, CHALLENGE)
SHIPPED: Final = ("asterisk", "asterisk-security", "freeswitch", "kamailio")

# <HOST>: [v6]:port, v4[:port], or a bare IPv6 address; checked afterwards
_HOST: Final = (
    r"(?P<host>\[[0-9A-Fa-f:.]+\](?::\d+)?"
    r"|\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?"
    r"|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*[0-9A-Fa-f])"
)
_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class PatternError(ValueError):
    """A pattern file that cannot be used; the message names the file and the key."""


class LogRecord(NamedTuple):
    host: str  # canonical address
    kind: str  # one of KINDS
    account: str  # "" when the line names none
    when: dt.datetime | None  # the line's own time (aware); None: it has none
    rule: str  # the rule's id


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    regex: re.Pattern[str]
    kind: str | None  # fixed; or None: from the ``event`` group through ``kinds``
    kinds: dict[str, str]
    hint: str | None  # a literal every matching line holds


@dataclass(frozen=True)
class Format:
    name: str
    rules: tuple[Rule, ...]
    description: str = ""

    def match(self, line: str, tz: dt.tzinfo, now: dt.datetime) -> LogRecord | None:
        """What ``line`` says (see the module doc); None when no rule matches,
        or the address is not one. ``now`` (aware) gives a missing year."""
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        for rule in self.rules:
            if rule.hint is not None and rule.hint not in line:
                continue
            m = rule.regex.search(line)
            if m is None:
                continue
            kind = rule.kind or rule.kinds.get(m.group("event"))
            if kind is None:
                continue  # an event the rule does not count (ChallengeSent...)
            host = address(m.group("host"))
            if host is None:
                continue
            groups = m.groupdict()
            when = None
            if groups.get("time"):
                when = timestamps.find(groups["time"], tz, now)
            if when is None:
                when = timestamps.find(line, tz, now)
            return LogRecord(host, kind, groups.get("account") or "", when, rule.id)
        return None


def address(text: str) -> str | None:
    """``<HOST>``'s text as a canonical address: brackets and port taken off."""
    if text.startswith("["):
        text = text[1 : text.index("]")]
    elif "." in text and text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return canonical(text) if "/" not in text else None
    except ValueError:
        return None


# ----------------------------------------------------------------- loading


def load(name: str, patterns: Path | None = None) -> Format:
    """A shipped format by name, or ``custom`` from the operator's file
    ``patterns``. Raises PatternError naming the file and the key."""
    if name == "custom":
        if patterns is None:
            raise PatternError("format 'custom' needs patterns = a pattern file")
        try:
            text = patterns.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PatternError(f"patterns {str(patterns)!r}: cannot be read ({exc})") from None
        return parse(text, name=str(patterns))
    if name not in SHIPPED:
        raise PatternError(
            f"format {name!r} is not known: use {', '.join(SHIPPED)} or custom (with patterns)"
        )
    return parse(_shipped(name), name=name)


def _shipped(name: str) -> str:
    return (resources.files(__package__) / "formats" / f"{name}.toml").read_text("utf-8")


def parse(text: str, *, name: str, _seen: frozenset[str] = frozenset()) -> Format:
    """A format from a pattern file's text (see ``formats/README.md``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PatternError(f"{name}: not TOML ({exc})") from None
    rules: list[Rule] = []
    for included in _strings(data, "include", name):
        if included not in SHIPPED or included in _seen:
            raise PatternError(
                f"{name}: include: {included!r} is not a shipped format: use {', '.join(SHIPPED)}"
            )
        rules.extend(parse(_shipped(included), name=included, _seen=_seen | {name}).rules)
    entries = data.get("rules", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise PatternError(f"{name}: rules must be [[rules]] tables")
    for i, entry in enumerate(entries):
        rules.append(_rule(entry, f"{name}: rules[{i}]"))
    if not rules:
        raise PatternError(f"{name}: no [[rules]] (and no include)")
    extra = set(data) - {"description", "include", "rules"}
    if extra:
        raise PatternError(
            f"{name}: unknown key {sorted(extra)[0]!r}: use description, include, rules"
        )
    return Format(name, tuple(rules), str(data.get("description", "")))


def _rule(entry: dict[str, Any], where: str) -> Rule:
    extra = set(entry) - {"id", "regex", "kind", "kinds", "hint"}
    if extra:
        raise PatternError(
            f"{where}: unknown key {sorted(extra)[0]!r}: use id, regex, kind, kinds, hint"
        )
    rule_id, source = entry.get("id"), entry.get("regex")
    if not isinstance(rule_id, str) or not rule_id:
        raise PatternError(f'{where}: id must be a name, e.g. id = "pjsip.no-endpoint"')
    if not isinstance(source, str) or source.count("<HOST>") != 1:
        raise PatternError(f"{where} ({rule_id}): regex must be a string with <HOST> once")
    try:
        regex = re.compile(source.replace("<HOST>", _HOST))
    except re.error as exc:
        raise PatternError(f"{where} ({rule_id}): regex does not compile: {exc}") from None
    kind, kinds = entry.get("kind"), entry.get("kinds", {})
    if (kind is None) == (not kinds):
        raise PatternError(f"{where} ({rule_id}): give kind, or kinds with an (?P<event>...) group")
    for value in [kind] if kind is not None else kinds.values():
        if value not in KINDS:
            raise PatternError(f"{where} ({rule_id}): kind {value!r}: use {', '.join(KINDS)}")
    if kinds and "event" not in regex.groupindex:
        raise PatternError(f"{where} ({rule_id}): kinds needs an (?P<event>...) group")
    hint = entry.get("hint")
    if hint is not None and not isinstance(hint, str):
        raise PatternError(f"{where} ({rule_id}): hint must be a string")
    return Rule(rule_id, regex, kind, dict(kinds), hint)


def _strings(data: dict[str, Any], key: str, name: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PatternError(f"{name}: {key} must be a list of names")
    return value
