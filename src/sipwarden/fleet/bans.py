"""The fleet's ban stream in Redis: how a node tells the others of its bans
and unbans, and how a node that was away finds out what it missed.

Keys (``FleetLink.key``): ``bans``, a Redis stream of every ban and unban
a node made itself (detector, rule, operator, analysis; not expiries, which
every node does on its own clock; not what it received), capped with
``MAXLEN ~ STREAM_LENGTH``; ``bans:in-force``, a hash of the bans in force
by target (the snapshot a joining node starts from); ``epoch``, a random
value set once per Redis data set (a Redis restarted without its data has
a new one: the stream ids a node kept mean nothing there); ``nodes``, a
hash of each node's heartbeat (JSON).

An entry carries the ban's origin node, detector, reason, offence,
evidence (``EVIDENCE_KEPT`` samples of ``EVIDENCE_CHARS`` at most),
``created_at`` (the origin's clock: with the target it names the ban, so
the same ban seen twice is one), the time it had left when published
(``remaining``; empty: permanent) and ``published_at`` on the fleet's
clock (Redis's ``TIME``, each node's offset to it measured: ``offset``),
so neither a ban's length nor the propagation delay depends on how far the
nodes' clocks are apart. A ban and its snapshot row, an unban and the
row's removal, are one ``MULTI`` transaction.

This module encodes, decodes and talks to Redis; what is applied, when,
and the limits are the daemon's fleet keeper's (``daemon/fleet.py``).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..values import MAX_DURATION, Ban, Change
from .link import FleetLink

STREAM_LENGTH: Final = 100_000  # entries kept (about: MAXLEN ~)
EVIDENCE_KEPT: Final = 5  # samples of evidence sent per ban
EVIDENCE_CHARS: Final = 500  # characters per sample sent
TEXT_CHARS: Final = 500  # a reason or detector sent, at most
READ_COUNT: Final = 500  # entries read at once
FIELDS: Final = (
    "op",
    "target",
    "origin",
    "detector",
    "reason",
    "offence",
    "evidence",
    "created_at",
    "remaining",
    "published_at",
)


@dataclass(frozen=True)
class Entry:
    """One ban or unban as the stream (or the snapshot) holds it."""

    op: Literal["ban", "unban"]
    ban: Ban  # its expires_at is meaningless here: see ``expires_at``
    remaining: float | None  # seconds it had left when published; None: permanent
    published_at: float  # on the fleet's clock
    id: str = ""  # the stream's id ("" from the snapshot)

    def expires_at(self, now: float, fleet_now: float) -> float | None:
        """When the ban ends on a clock reading ``now`` while the fleet's
        reads ``fleet_now`` (None: permanent; in the past: it is over)."""
        if self.remaining is None:
            return None
        return now + self.remaining - max(0.0, fleet_now - self.published_at)


def encode(change: Change, origin: str, now: float, fleet_now: float) -> dict[str, str] | None:
    """The stream entry of a change of this node's book (None: a ban that
    is already over: nothing to tell)."""
    ban = change.ban
    remaining = None if ban.expires_at is None else ban.expires_at - now
    if change.op == "add" and remaining is not None and remaining <= 0:
        return None
    return {
        "op": "ban" if change.op == "add" else "unban",
        "target": ban.target,
        "origin": origin,
        "detector": ban.detector[:TEXT_CHARS],
        "reason": ban.reason[:TEXT_CHARS],
        "offence": str(ban.offence),
        "evidence": json.dumps([e[:EVIDENCE_CHARS] for e in ban.evidence[:EVIDENCE_KEPT]]),
        "created_at": repr(ban.created_at),
        "remaining": "" if remaining is None else repr(max(remaining, 0.0)),
        "published_at": repr(fleet_now),
    }


def decode(fields: dict[Any, Any], entry_id: str = "") -> Entry | None:
    """An entry from Redis's reply (bytes or str); None if it is not one
    (a foreign or damaged entry is skipped, never half-applied)."""
    try:
        got = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        op: Literal["ban", "unban"] = "ban" if got["op"] == "ban" else "unban"
        if got["op"] != op:
            return None
        evidence = json.loads(got["evidence"])
        if not isinstance(evidence, list):
            return None
        remaining = float(got["remaining"]) if got["remaining"] else None
        created, published = float(got["created_at"]), float(got["published_at"])
        # NaN or infinity (a broken or hostile node) would date a ban NaN: refused
        if not (math.isfinite(created) and math.isfinite(published)):
            return None
        if remaining is not None and not 0 <= remaining <= MAX_DURATION:
            return None
        ban = Ban(
            got["target"],
            got["reason"][:TEXT_CHARS],
            got["detector"][:TEXT_CHARS],
            created,
            None,
            max(1, int(got["offence"])),
            tuple(str(e)[:EVIDENCE_CHARS] for e in evidence[:EVIDENCE_KEPT]),
            got["origin"] or "?",
        )
        return Entry(op, ban, remaining, published, entry_id)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError):
        return None


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as a pair that sorts as Redis does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BanStream:
    """The ban stream, its snapshot and the heartbeats, over one link.
    Every call may raise ``link.UNREACHABLE``'s exceptions: the caller marks
    the link down and tries again."""

    def __init__(self, link: FleetLink) -> None:
        self.link = link
        self.stream = link.key("bans")
        self.in_force = link.key("bans", "in-force")
        self.epoch_key = link.key("epoch")
        self.nodes_key = link.key("nodes")

    async def clock_offset(self) -> float:
        """Redis's clock minus this node's (half the round trip allowed for)."""
        before = time.time()
        seconds, micros = await self.link.client.time()
        after = time.time()
        return seconds + micros / 1e6 - (before + after) / 2

    async def epoch(self) -> str:
        """This Redis data set's epoch (made here if it has none yet)."""
        client = self.link.client
        await client.set(self.epoch_key, secrets.token_hex(8), nx=True)
        return _text(await client.get(self.epoch_key))

    async def publish(self, entries: list[dict[str, str]]) -> list[str]:
        """Add ``entries`` to the stream, in order, and the snapshot with
        them, in one transaction; returns their ids."""
        pipe = self.link.client.pipeline(transaction=True)
        for fields in entries:
            pipe.xadd(self.stream, fields, maxlen=STREAM_LENGTH, approximate=True)  # type: ignore[arg-type]
            if fields["op"] == "ban":
                pipe.hset(self.in_force, fields["target"], json.dumps(fields))
            else:
                pipe.hdel(self.in_force, fields["target"])
        replies = await pipe.execute()
        return [_text(r) for r in replies[0::2]]

    async def read(self, after: str, block_ms: int) -> list[Entry]:
        """The entries after ``after`` (waiting up to ``block_ms`` for one);
        an entry that does not decode comes back as an unban of nothing
        (``Entry.ban.target`` empty) so the caller moves past its id."""
        reply: Any = await self.link.client.xread(
            {self.stream: after}, count=READ_COUNT, block=block_ms
        )
        entries = []
        for _, rows in reply or ():
            for raw_id, fields in rows:
                entry_id = _text(raw_id)
                entry = decode(fields, entry_id)
                entries.append(
                    entry or Entry("unban", Ban("", "", "", 0.0, None), None, 0, entry_id)
                )
        return entries

    async def info(self) -> tuple[str, str | None]:
        """(the stream's last id, the greatest id trimmed away or None)."""
        try:
            info = await self.link.client.xinfo_stream(self.stream)
        except Exception as exc:  # no such key: an empty stream
            if "no such key" in str(exc).lower():
                return "0-0", None
            raise
        last = _text(info.get("last-generated-id") or "0-0")
        deleted = info.get("max-deleted-entry-id")
        return last, None if deleted is None else _text(deleted)

    async def holds_after(self, applied: str) -> bool:
        """Whether every entry after ``applied`` is still in the stream
        (none trimmed away: a replay from there misses nothing)."""
        last, deleted = await self.info()
        if parse_id(applied) > parse_id(last):
            return False  # an id this stream never gave: another data set
        return deleted is None or parse_id(deleted) <= parse_id(applied)

    async def snapshot(self) -> tuple[str, list[Entry]]:
        """(the stream's last id, read first; the bans in force): follow the
        stream from that id after applying them, and nothing falls between."""
        last, _ = await self.info()
        rows = await self.link.client.hgetall(self.in_force)
        entries = []
        for value in rows.values():
            try:
                entry = decode(json.loads(value))
            except ValueError:
                entry = None
            if entry is not None and entry.op == "ban":
                entries.append(entry)
        return last, entries

    async def prune(self, fleet_now: float, batch: int = 500) -> int:
        """Drop the snapshot's bans that are over (one pass; bounded by the
        bans in force); returns how many."""
        client = self.link.client
        gone = 0
        async for target, value in client.hscan_iter(self.in_force, count=batch):
            try:
                entry = decode(json.loads(value))
            except ValueError:
                entry = None
            if entry is None or (
                entry.remaining is not None and entry.published_at + entry.remaining <= fleet_now
            ):
                gone += await client.hdel(self.in_force, target)
        return gone

    async def beat(self, node: str, state: dict[str, Any]) -> None:
        await self.link.client.hset(self.nodes_key, node, json.dumps(state))

    async def nodes(self) -> dict[str, dict[str, Any]]:
        rows = await self.link.client.hgetall(self.nodes_key)
        nodes = {}
        for name, value in rows.items():
            try:
                state = json.loads(value)
            except ValueError:
                continue
            if isinstance(state, dict):
                nodes[_text(name)] = state
        return nodes
