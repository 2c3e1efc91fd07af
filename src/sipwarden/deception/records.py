"""The honeypot's call records: what a hostile caller dialled, and with what.

One record per (source address, dialled number): ``count``, ``first_seen``,
``last_seen`` and the details of the latest call, the contract's honeypot
record and what the research says a number-recording honeypot should keep
beyond SentryPeer and HoneyPy (../shared/research/deception.md, "Existing
honeypots"): the source port, the Request-URI user ("number", as sent) and
the To user, the From user and tag, the Contact, the Via sent-by, the SDP's
media address and port (``c=``/``m=``: often the attacker's real media
host), the digest user tried, the User-Agent, and the number as the
caller's classifier reads it (``normalised``, ``prefix``, ``country``).

The number is the Request-URI's user part; a Request-URI without one
(``INVITE sip:127.0.0.1``, as svcrack sends) falls back to the To user,
which is what SentryPeer records.

The classifier is the caller's (the dialplan's ``intel.numbers.classify``
as a callable ``number -> (normalised, prefix, country)``); the default
keeps the number as it is and knows no prefix or country.

Bounds: at most ``max_keys`` records between two ``drain``s (the store
adds them up); a new key past that is counted in ``dropped``, never kept.
Every text field is cut at ``MAX_FIELD`` characters (a hostile header
cannot fill the disk). Also here: the export formats, pure functions of
the stored records (JSON lines with SentryPeer's field names, plain lists).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from ..sip import Message, SipError

if TYPE_CHECKING:
    from ..values import Peer

Classifier = Callable[[str], tuple[str | None, str | None, str | None]]
MAX_FIELD: Final = 256  # characters kept of any text field
MAX_SDP_LINES: Final = 64  # lines of an SDP body read for c= and m=

# the record's fields after the key, in the order the store and --json give them
DETAILS: Final = (
    "source_port",
    "transport",
    "to_user",
    "from_user",
    "from_tag",
    "contact",
    "via",
    "user_agent",
    "media_address",
    "media_port",
    "digest_user",
    "normalised",
    "prefix",
    "country",
)


def unchanged(number: str) -> tuple[str | None, str | None, str | None]:
    """The default classifier: the number as dialled, no prefix, no country."""
    return number, None, None


class CallRecords:
    """The records of calls since the last ``drain``, one per (source, number)."""

    def __init__(self, classify: Classifier = unchanged, *, max_keys: int = 10_000) -> None:
        self.classify = classify
        self.max_keys = max_keys
        self.dropped = 0  # calls not recorded: their key did not fit
        self._records: dict[tuple[str, str], dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def observe(self, msg: Message, source: Peer, now: float) -> None:
        """Count one call (an INVITE, not its retransmissions); never raises."""
        number = _number(msg)[:MAX_FIELD]
        key = (source.host, number)
        record = self._records.get(key)
        if record is not None:
            record["count"] += 1
            record["last_seen"] = now
            record.update(self._details(msg, source, number))
            return
        if len(self._records) >= self.max_keys:
            self.dropped += 1
            return
        self._records[key] = {
            "source": source.host,
            "number": number,
            "count": 1,
            "first_seen": now,
            "last_seen": now,
            **self._details(msg, source, number),
        }

    def drain(self) -> list[dict[str, Any]]:
        """The records since the last drain (the store adds them up), and forget them."""
        records, self._records = list(self._records.values()), {}
        return records

    def _details(self, msg: Message, source: Peer, number: str) -> dict[str, Any]:
        try:
            normalised, prefix, country = self.classify(number)
        except Exception:  # a classifier's bug must not lose the call
            normalised, prefix, country = number, None, None
        media_address, media_port = _media(msg.body)
        return {
            "source_port": source.port,
            "transport": source.transport,
            "to_user": _cut(_user(msg, "to")),
            "from_user": _cut(_user(msg, "from")),
            "from_tag": _cut(_safe(lambda: msg.from_.tag if msg.from_ else None)),
            "contact": _cut(msg.get("contact")),
            "via": _cut(_safe(lambda: _sent_by(msg))),
            "user_agent": _cut(msg.user_agent),
            "media_address": _cut(media_address),
            "media_port": media_port,
            "digest_user": _cut(_safe(lambda: _digest_user(msg))),
            "normalised": _cut(normalised),
            "prefix": _cut(prefix),
            "country": _cut(country),
        }


# ------------------------------------------------------------ the fields


def _number(msg: Message) -> str:
    user = _safe(lambda: msg.uri.user)
    return user if user else (_user(msg, "to") or "")


def _user(msg: Message, which: str) -> str | None:
    def read() -> str | None:
        address = msg.to if which == "to" else msg.from_
        return address.uri.user if address is not None and address.uri is not None else None

    return _safe(read)


def _sent_by(msg: Message) -> str | None:
    via = msg.via
    if via is None:
        return None
    return f"{via.host}:{via.port}" if via.port is not None else via.host


def _digest_user(msg: Message) -> str | None:
    for credentials in (msg.authorization, msg.proxy_authorization):
        if credentials is not None and credentials.get("username") is not None:
            return credentials.get("username")
    return None


def _media(body: bytes) -> tuple[str | None, int | None]:
    """The SDP's connection address (the first ``c=``, session or media
    level) and the first stream's port (``m=``)."""
    address: str | None = None
    port: int | None = None
    for line in body.decode("utf-8", "replace").splitlines()[:MAX_SDP_LINES]:
        if line.startswith("c=") and address is None:
            parts = line[2:].split()
            if len(parts) >= 3:
                address = parts[2].split("/")[0]
        elif line.startswith("m=") and port is None:
            parts = line[2:].split()
            if len(parts) >= 2:
                digits = parts[1].split("/")[0]
                port = int(digits) if digits.isdigit() and len(digits) <= 5 else None
    return address, port


def _safe(read: Callable[[], str | None]) -> str | None:
    try:
        return read()
    except (SipError, ValueError, AttributeError):
        return None


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:MAX_FIELD]


# ---------------------------------------------------------------- export

# SentryPeer's event field names (its JSON log, read by T-Pot/ELK as is),
# from our record's
SENTRYPEER: Final = {
    "source_ip": "source",
    "called_number": "number",
    "transport_type": "transport",
    "sip_user_agent": "user_agent",
}


def as_jsonl(records: Iterable[dict[str, Any]]) -> str:
    """One JSON object per line: SentryPeer's names first (``app_name``,
    ``event_timestamp`` as ISO 8601 of the last call, ``collected_method``
    "responsive", ``sip_method`` "INVITE", ``source_ip``, ``called_number``,
    ``transport_type`` upper-case, ``sip_user_agent``), then our record."""
    lines = []
    for record in records:
        when = datetime.datetime.fromtimestamp(record["last_seen"], datetime.UTC)
        shared = {
            "app_name": "sipwarden",
            "event_timestamp": when.isoformat().replace("+00:00", "Z"),
            "collected_method": "responsive",
            "sip_method": "INVITE",
            **{name: record.get(ours) for name, ours in SENTRYPEER.items()},
        }
        if shared["transport_type"]:
            shared["transport_type"] = str(shared["transport_type"]).upper()
        lines.append(json.dumps({**shared, **record}, separators=(",", ":")) + "\n")
    return "".join(lines)


def numbers(records: Iterable[dict[str, Any]]) -> str:
    """The numbers dialled (normalised where the classifier knew them, as
    dialled otherwise), one a line, most called first."""
    return _listed(records, lambda r: r.get("normalised") or r.get("number") or "")


def sources(records: Iterable[dict[str, Any]]) -> str:
    """The sources that called, one a line, most calls first."""
    return _listed(records, lambda r: r.get("source") or "")


def _listed(records: Iterable[dict[str, Any]], word: Callable[[dict[str, Any]], str]) -> str:
    counts: dict[str, int] = {}
    for record in records:
        name = word(record)
        if name:
            counts[name] = counts.get(name, 0) + int(record.get("count", 1))
    ordered = sorted(counts, key=lambda name: (-counts[name], name))
    return "".join(f"{name}\n" for name in ordered)


EXPORTS: Final[dict[str, Callable[[Iterable[dict[str, Any]]], str]]] = {
    "jsonl": as_jsonl,
    "numbers": numbers,
    "sources": sources,
}

__all__ = ["DETAILS", "EXPORTS", "CallRecords", "Classifier", "as_jsonl", "numbers", "sources"]
