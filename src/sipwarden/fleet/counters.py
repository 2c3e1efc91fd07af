"""Failure counts shared by the fleet: five guesses spread over three edges
are five, not one and two (``[fleet] share_failures``).

What it does: ``FleetCounters`` is the failure tracker's ``tap`` (see
``policy/failures.py``): each counted event (a failed login, a probe for a
user, a named user refused, a success) is appended to a pending batch on the
packet thread, nothing more. Every ``INTERVAL`` the batch goes to Redis in
one call of one Lua script (``SCRIPT``), which counts it into keys with
expiry, per source:

- ``prefix:fail:<source>``: a sorted set of failed logins (score: when;
  member: node, a unique id, the account), at most as many as a threshold
  needs, so a success wipes that account's failures from that source;
- ``prefix:nf:<source>``: the probes for unknown users (404s);
- ``prefix:users:<source>``: the users refused within ``users_window`` (one
  that logs in is taken off);
- ``prefix:acct:<account>``: failed logins per account across sources (for
  visibility; ``accounts``);

and answers, in the same round trip, the sources whose fleet-wide count
reached the tracker's threshold. The script runs atomically, and the
source's keys are deleted when it answers so: exactly one node (the one
whose events crossed the threshold) learns of a crossing; it makes the
``Decision`` (the tracker's detector ids, a reason that says it was
fleet-wide, the failures' times, nodes and accounts as evidence) and hands it
to the policy in force (``policy.ban``: the ban book decides, monitor mode
is handled there). The other nodes learn of the ban through the ban stream.

The meanings are the tracker's, read from the tracker in force at each
flush (``maxretry``, ``findtime``, ``burst``, quiet time, ``enumeration``,
``distinct_users``, ``users_window``, ``slow_bantime``); every node keeps
counting locally as well (its tracker is unchanged), so a node alone, or
one whose Redis is away, protects itself as before.

Bounds: the pending batch holds at most ``[fleet] queue`` events (the oldest
dropped first, counted); a flush sends at most ``BATCH`` events; events
older than the longest window are not sent; Redis keeps per source at most
a threshold's worth of entries, each key expiring after its window. Redis
unreachable: the batch waits (bounded) and the flush is retried every
``RETRY`` seconds; ``status`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError

from ..policy.failures import LOGGED_IN, LOGIN_FAILED, NOT_FOUND, REFUSED, FailureTracker
from ..policy.wording import span, utc
from ..values import Decision
from .link import RETRY, UNREACHABLE, FleetLink

if TYPE_CHECKING:
    from ..policy import Policy

log = logging.getLogger("sipwarden.fleet")

INTERVAL: Final = 0.1  # seconds between flushes
BATCH: Final = 5_000  # events in one script call (a longer backlog takes several)
KEPT: Final = 1_000  # fleet-wide per-account and per-source totals remembered here
EVIDENCE_KEPT: Final = 5
# the script's one-letter kinds
CODES: Final = {LOGIN_FAILED: "f", NOT_FOUND: "n", REFUSED: "r", LOGGED_IN: "s"}
HEAD: Final = 11  # ARGV before the events: prefix, node, batch id, then the settings

# ARGV: prefix, node, batch id, maxretry, findtime, keep, horizon, enumeration,
# distinct_users, users_window, (unused), then per event: kind, host, user, when.
# Returns {decisions, totals}: a decision is {code, host, count, first, last,
# here, entries...} (entries: "when node account" of the failures or
# probes, or the users); totals is {host, fleet-wide failures, ...} and
# {account, failures} pairs prefixed "@" for the accounts.
SCRIPT: Final = """
local p, node, batch = ARGV[1], ARGV[2], ARGV[3]
local maxretry, findtime = tonumber(ARGV[4]), tonumber(ARGV[5])
local keep, horizon = tonumber(ARGV[6]), tonumber(ARGV[7])
local enumeration, distinct, uwin = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local decisions, totals, seen = {}, {}, {}

local function parts(member)  -- node \\0 id \\0 account
  local a = string.find(member, '\\0', 1, true)
  local b = string.find(member, '\\0', a + 1, true)
  return string.sub(member, 1, a - 1), string.sub(member, b + 1)
end

local function window(key, t, span, count)  -- the last `count` entries within `span` of t
  local rows = redis.call('ZRANGEBYSCORE', key, '(' .. (t - span), '+inf', 'WITHSCORES')
  local n = #rows / 2
  if n < count then return nil end
  local out, here = {}, 0
  for i = 2 * (n - count) + 1, #rows, 2 do
    local who, account = parts(rows[i])
    if who == node then here = here + 1 end
    out[#out + 1] = rows[i + 1] .. ' ' .. who .. ' ' .. account
  end
  return out, here, rows[2 * (n - count) + 2], rows[#rows]
end

local function decide(code, host, count, first, last, here, entries)
  local d = {code, host, tostring(count), first, last, tostring(here)}
  for _, e in ipairs(entries) do d[#d + 1] = e end
  decisions[#decisions + 1] = d
  redis.call('DEL', p .. ':fail:' .. host, p .. ':nf:' .. host, p .. ':users:' .. host)
end

for i = 12, #ARGV, 4 do
  local kind, host, user, t = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local fk, uk = p .. ':fail:' .. host, p .. ':users:' .. host
  local decided = false
  if kind == 's' then
    for _, m in ipairs(redis.call('ZRANGE', fk, 0, -1)) do
      local _, account = parts(m)
      if account == user then redis.call('ZREM', fk, m) end
    end
    redis.call('ZREM', uk, user)
  elseif kind == 'f' then
    redis.call('ZADD', fk, t, node .. '\\0' .. batch .. '.' .. i .. '\\0' .. user)
    redis.call('ZREMRANGEBYSCORE', fk, '-inf', t - horizon)
    redis.call('ZREMRANGEBYRANK', fk, 0, -(keep + 1))
    redis.call('EXPIRE', fk, math.ceil(horizon))
    if user ~= '' then
      local ak = p .. ':acct:' .. user
      local n = redis.call('INCR', ak)
      redis.call('EXPIRE', ak, math.ceil(horizon))
      seen['@' .. user] = n
    end
    local entries, here, first, last = window(fk, t, findtime, maxretry)
    if entries then
      decide('f', host, maxretry, first, last, here, entries)
      decided = true
    else
      seen[host] = redis.call('ZCARD', fk)
    end
  elseif kind == 'n' then
    local nk = p .. ':nf:' .. host
    redis.call('ZADD', nk, t, node .. '\\0' .. batch .. '.' .. i .. '\\0' .. user)
    redis.call('ZREMRANGEBYSCORE', nk, '-inf', t - findtime)
    redis.call('ZREMRANGEBYRANK', nk, 0, -(enumeration + 1))
    redis.call('EXPIRE', nk, math.ceil(findtime))
    local entries, here, first, last = window(nk, t, findtime, enumeration)
    if entries then
      decide('n', host, enumeration, first, last, here, entries)
      decided = true
    end
  end
  if not decided and kind ~= 's' and user ~= '' then
    redis.call('ZADD', uk, t, user)
    redis.call('ZREMRANGEBYSCORE', uk, '-inf', t - uwin)
    redis.call('ZREMRANGEBYRANK', uk, 0, -(distinct + 1))
    redis.call('EXPIRE', uk, math.ceil(uwin))
    if redis.call('ZCARD', uk) >= distinct then
      local users = redis.call('ZRANGE', uk, 0, -1, 'WITHSCORES')
      local entries = {}
      for j = 1, #users, 2 do entries[#entries + 1] = users[j + 1] .. ' - ' .. users[j] end
      decide('u', host, #users / 2, users[2], users[#users], 0, entries)
    end
  end
end
for key, n in pairs(seen) do
  totals[#totals + 1] = key
  totals[#totals + 1] = n
end
return {decisions, totals}
"""


@dataclass(frozen=True)
class Settings:
    """The tracker's thresholds as they stand now (quiet time applied)."""

    maxretry: int
    findtime: float
    keep: int  # failures kept per source: what either time's threshold needs
    horizon: float  # ... and how long
    burst: float
    slow_bantime: float
    enumeration: int
    distinct_users: int
    users_window: float
    quiet: bool

    @classmethod
    def of(cls, tracker: FailureTracker, now: float) -> Settings:
        """The tracker's meanings at ``now`` (as its ``_failed`` reads them)."""
        maxretry, findtime, quiet = tracker.maxretry, tracker.findtime, False
        keep, horizon = maxretry, findtime
        if tracker.quiet is not None:
            keep = max(keep, tracker.quiet_maxretry or 0)
            horizon = max(horizon, tracker.quiet_findtime or 0)
            if tracker.quiet(now):
                maxretry = tracker.quiet_maxretry or maxretry
                findtime = tracker.quiet_findtime or findtime
                quiet = True
        return cls(
            maxretry,
            findtime,
            keep,
            horizon,
            tracker.burst,
            tracker.slow_bantime,
            tracker.enumeration,
            tracker.distinct_users,
            tracker.users_window,
            quiet,
        )

    @property
    def longest(self) -> float:
        """Events older than this count in no window."""
        return max(self.horizon, self.users_window)


def script_args(prefix: str, node: str, batch: str, settings: Settings) -> list[str | float]:
    """The script's ARGV before the events."""
    s = settings
    return [
        prefix,
        node,
        batch,
        s.maxretry,
        s.findtime,
        s.keep,
        s.horizon,
        s.enumeration,
        s.distinct_users,
        s.users_window,
        "",
    ]


def coalesce(
    events: Sequence[tuple[str, str, str, float]], now: float, longest: float
) -> tuple[list[str | float], int]:
    """The events as the script's ARGV tail, in order: those older than
    ``longest`` left out (they count in no window), and a success repeated
    for one (source, account) sent once (a phone's every 2xx is one). And
    how many were left out."""
    out: list[str | float] = []
    told: set[tuple[str, str]] = set()
    skipped = 0
    for host, kind, user, when in events:
        if now - when >= longest:
            skipped += 1
            continue
        if kind == LOGGED_IN:
            if (host, user) in told:
                skipped += 1
                continue
            told.add((host, user))
        else:
            told.discard((host, user))
        out += (CODES[kind], host, user, when)
    return out, skipped


def decision(row: Sequence[bytes], settings: Settings, node: str) -> Decision:
    """The script's answer for one source as the tracker's ``Decision``,
    worded as fleet-wide."""
    code, host, count, first, last, here = (x.decode() for x in row[:6])
    entries = [x.decode(errors="replace") for x in row[6:]]
    n, since, until, mine = int(count), float(first), float(last), int(here)
    s = settings
    if code == "u":
        return Decision(
            host,
            "enum.users",
            f"{n} different users refused across the fleet within {span(s.users_window)}",
            "progressive",
            _evidence(entries, "refused"),
        )
    where = f"across the fleet ({mine} here)"
    if code == "n":
        return Decision(
            host,
            "enum.not-found",
            f"{n} unknown users or extensions {where} within {span(s.findtime)}",
            "progressive",
            _evidence(entries, "probe for an unknown user"),
        )
    users = sorted({e.split(" ", 2)[2] for e in entries} - {""})
    whom = f" for {', '.join(users[:3])}" + ("..." if len(users) > 3 else "")
    when = " in quiet time" if s.quiet else ""
    if until - since <= s.burst:
        return Decision(
            host,
            "auth.brute-force",
            f"{n} failed logins {where}{whom} within {span(until - since)}{when}",
            "progressive",
            _evidence(entries, "failed login"),
        )
    return Decision(
        host,
        "auth.failures",
        f"{n} failed logins {where}{whom} within {span(s.findtime)}{when}"
        " (at a phone's pace: a fixed, short ban)",
        s.slow_bantime,
        _evidence(entries, "failed login"),
    )


def _evidence(entries: list[str], what: str) -> tuple[str, ...]:
    """The last entries as lines: "<UTC time> <what> for <account> at node <node>"."""
    lines = []
    for entry in entries[-EVIDENCE_KEPT:]:
        when, who, account = entry.split(" ", 2)
        at = "" if who == "-" else f" at node {who}"
        lines.append(f"{utc(float(when))} {what} for {account or '?'}{at} (fleet-wide)")
    return tuple(lines)


class FleetCounters:
    """The failure tracker's tap and its flush to Redis (see the module doc).

    ``policy`` gives the policy in force (a reload swaps it): its tracker's
    meanings are read at each flush, its tracker is given the tap (again,
    if a reload made a new one), its ``ban`` takes the decisions."""

    def __init__(
        self,
        link: FleetLink,
        policy: Callable[[], Policy],
        *,
        bound: int | None = None,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.policy = policy
        self.bound = bound if bound is not None else link.config.queue
        self.interval = interval
        self.clock = clock
        self.pending: deque[tuple[str, str, str, float]] = deque(maxlen=self.bound)
        # fleet-wide failed logins per account and per source, as the last
        # round trips said (for visibility; bounded, most recent last)
        self.accounts: OrderedDict[str, int] = OrderedDict()
        self.sources: OrderedDict[str, int] = OrderedDict()
        self.counters: Counter[str] = Counter()
        self.dropped = 0  # events let go: the batch was full (Redis away)
        self._script = link.client.register_script(SCRIPT)
        self._batches = 0
        self._next_try = 0.0  # Redis away: the next flush not before this
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------ the packet path

    def record(self, host: str, kind: str, user: str, now: float) -> None:
        """The tap: one event into the pending batch (O(1); the oldest goes
        when it is full)."""
        pending = self.pending
        if len(pending) == self.bound:
            self.dropped += 1
        pending.append((host, kind, user, now))

    # ------------------------------------------------------------- life

    async def start(self) -> None:
        self.attach()
        await self.link.connect()  # False: Redis away, the flushes retry; auth refused: raised
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        tracker = self.policy().failures
        if tracker is not None and tracker.tap == self.record:
            tracker.tap = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.pending and self.link.up:  # what the last moments counted
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), self.link.config.timeout)
        await self.link.close()

    def attach(self) -> None:
        """Be the tap of the tracker in force (a reload that made a new one
        is caught up with at the next flush)."""
        tracker = self.policy().failures
        if tracker is not None and tracker.tap != self.record:
            tracker.tap = self.record

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.attach()
            if not self.pending or self.clock() < self._next_try:
                continue
            try:
                await self.flush()
            except Exception:  # a bug must not end the sharing (counted, logged)
                self.counters["errors"] += 1
                log.exception("fleet counters: a flush failed")

    async def flush(self) -> int:
        """One round trip: up to ``BATCH`` pending events counted in Redis,
        the crossings decided. How many events were sent."""
        policy = self.policy()
        tracker = policy.failures
        now = self.clock()
        if tracker is None:  # [failures] off: nothing counts
            self.pending.clear()
            return 0
        settings = Settings.of(tracker, now)
        events = [self.pending.popleft() for _ in range(min(BATCH, len(self.pending)))]
        tail, skipped = coalesce(events, now, settings.longest)
        self.counters["skipped"] += skipped
        if not tail:
            return 0
        self._batches += 1
        batch = f"{os.getpid()}.{self._batches}"
        head = script_args(self.link.config.prefix, self.link.node, batch, settings)
        try:
            answer = await self._script(keys=[], args=[*head, *tail])
        except UNREACHABLE as exc:
            self.link.mark_down(exc)
            self._put_back(events)
            self._next_try = self.clock() + RETRY
            self.counters["redis-errors"] += 1
            return 0
        except RedisError as exc:  # refused (ACL, script error): dropped, said
            self.counters["redis-errors"] += 1
            self.counters["lost"] += len(events)
            log.error("fleet counters: Redis refused a batch of %d events: %s", len(events), exc)
            return 0
        self.link.mark_up()
        self._next_try = 0.0
        sent = len(tail) // 4
        self.counters["sent"] += sent
        self.counters["flushes"] += 1
        decisions, totals = answer
        self._learn(totals)
        for row in decisions:
            self._decide(policy, decision(row, settings, self.link.node), now)
        return sent

    def _put_back(self, events: list[tuple[str, str, str, float]]) -> None:
        """Redis away: the batch goes back in front of what came since,
        the oldest dropped beyond the bound."""
        newer = list(self.pending)
        keep = events + newer
        over = len(keep) - self.bound
        if over > 0:
            self.dropped += over
            keep = keep[over:]
        self.pending.clear()
        self.pending.extend(keep)

    def _learn(self, totals: Sequence[Any]) -> None:
        for i in range(0, len(totals), 2):
            name = totals[i].decode(errors="replace")
            table, name = (self.accounts, name[1:]) if name[:1] == "@" else (self.sources, name)
            table.pop(name, None)
            table[name] = int(totals[i + 1])
            while len(table) > KEPT:
                table.popitem(last=False)

    def _decide(self, policy: Policy, made: Decision, now: float) -> None:
        """A crossing this node's events made: the ban book decides (unless
        the source is banned here already: the local tracker was first)."""
        book = policy.bans
        if book is not None and book.banned(made.target, now) is not None:
            self.counters["already-banned"] += 1
            return
        if policy.failures is not None:
            policy.failures.forget(made.target)  # counted afresh, as after its own decisions
        policy.ban(made, now)
        self.counters[f"decisions:{made.detector}"] += 1
        log.info("fleet counters: %s: %s (%s)", made.target, made.reason, made.detector)

    # ----------------------------------------------------------- status

    def status(self) -> dict[str, int]:
        """Counters, summed over workers (``workers-down``: workers whose
        Redis does not answer: the counts are local only meanwhile)."""
        return {
            **self.counters,
            "pending": len(self.pending),
            "dropped": self.dropped,
            "workers-up": int(self.link.up),
            "workers-down": int(not self.link.up),
        }
