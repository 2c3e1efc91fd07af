"""The failure tracker: what the backend's answers say about a source.

Operations: ``answer(host, status, method, user, credentials, now)`` for each
final answer the backend gives a client (the edge reads it off our Via: the
client's address from the flow token, whether the request carried
credentials from our ``swa`` flag), returning a ``Decision`` when a source
has earned a ban. Sans-I/O; the clock is passed in.

What counts, as in fail2ban's asterisk jail and CrowdSec's asterisk scenarios:

- a failed login: 401/403/407 to a request that carried Authorization or
  Proxy-Authorization (the first challenge of a normal login carries none, so
  it is not a failure);
- enumeration: 404 to REGISTER (no such user), or to an INVITE sent without
  credentials (no such extension; a logged-in phone that misdials is not
  probing), and many distinct users challenged or refused from one source in
  a short window (a user that then logs in is taken off that list, so an
  office whose phones all boot at once is not an enumerator).

Guessing and a stale password look alike but for their pace: a brute-forcer
fails many times a second, a phone whose password was changed retries every
30-60 s. ``maxretry`` failures within ``findtime`` earn a ban either way; if
they came within ``burst`` seconds it is ``auth.brute-force`` (a progressive
ban: longer each time), otherwise ``auth.failures`` and a fixed
``slow_bantime``: the phone is slowed, never banned for good. A 2xx for an
account wipes that account's failures from that source (wiping all of them
would let an attacker with one cracked account reset the count between
guesses). Only a 2xx to a request that carried credentials is a login: any
source can get a 200 to an OPTIONS naming an account.

Quiet time (``[schedule.quiet]``): with a ``quiet`` callable (the
schedule's ``quiet(now)``, answered per minute), ``quiet_maxretry`` and
``quiet_findtime`` replace ``maxretry`` and ``findtime`` whenever it says
now is quiet; the failures kept are those either needs, so a count begun by
day carries into the night.

The fleet (``fleet/counters.py``) counts the same failures across nodes: a
``tap`` (a plain callable, None by default: one attribute test when unset)
is told ``(host, kind, user, now)`` of each failed login (``LOGIN_FAILED``),
probe (``NOT_FOUND``), other refusal of a named user (``REFUSED``: the
distinct-users count) and success for a named user (``LOGGED_IN``, told
even for a source not tracked here: its failures may be elsewhere). It
must only record (the packet path waits for it); the tracker stays pure.

Bounded: at most ``max_sources`` sources (least recently touched forgotten
first, to within a generation: ``recent.RecentMap``) and ``max_accounts``
accounts; per source, only as many timestamps as a threshold needs.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from ..values import Decision
from .recent import RecentMap
from .wording import last, span, utc

FAILED: Final = frozenset((401, 403, 407))
LOGIN_FAILED: Final = "auth.failed"  # what `failure` calls a failed login
NOT_FOUND: Final = "auth.not-found"  # ... and a probe for a user or extension
LOGGED_IN: Final = "auth.ok"  # ... and a login that succeeded (a PBX's log says so)
REFUSED: Final = "auth.refused"  # the tap's word for a named user refused otherwise (a challenge)
EVIDENCE_KEPT: Final = 5


# A source's state: a tuple (failures, not_found, pending, evidence) of
# tuples of strings and floats, replaced whole on each change and kept
# marshalled (bytes: ~1 us a failure to pack and unpack), so that the table
# holds only strings and bytes, which the garbage collector never tracks: a
# brute force from 100,000 spoofed sources adds nothing to what every
# collection walks (a slots object per source made a full collection walk
# 100,000 more: 100+ ms; tuples in an OrderedDict still cost it ~6 ms);
# see tests/policy/test_failures.py.
_Source = tuple[
    tuple[tuple[float, str], ...],  # failures: (when, account)
    tuple[float, ...],  # not_found: when
    tuple[tuple[str, float], ...],  # pending: (user, last refused), oldest first
    tuple[tuple[float, str], ...],  # evidence: (when, what), worded at a ban only
]
_EMPTY: Final[_Source] = ((), (), (), ())


@dataclass
class FailureTracker:
    maxretry: int = 5
    findtime: float = 600.0
    burst: float = 60.0  # maxretry failures faster than this: brute force
    slow_bantime: float = 600.0
    enumeration: int = 10  # 404s within findtime
    distinct_users: int = 10  # refused users within users_window
    users_window: float = 60.0
    max_sources: int = 100_000
    max_accounts: int = 100_000
    quiet: Callable[[float], bool] | None = None  # the schedule: is now quiet time?
    quiet_maxretry: int | None = None  # in quiet time (None: maxretry)
    quiet_findtime: float | None = None  # in quiet time (None: findtime)
    # told of each counted event (see the module doc); kept across reloads with the tracker
    tap: Callable[[str, str, str, float], None] | None = None

    def __post_init__(self) -> None:
        self._sources: RecentMap[bytes] = RecentMap(self.max_sources)  # marshalled _Source
        # failed logins per account, across sources: an account under a
        # distributed attack shows here (metrics, `status`) even when no
        # single source crosses a threshold
        self.accounts: RecentMap[int] = RecentMap(self.max_accounts)

    def __len__(self) -> int:
        return len(self._sources)

    def forget(self, host: str) -> None:
        """Drop what is known of ``host`` (it was banned: start afresh)."""
        self._sources.pop(host)

    def answer(
        self,
        host: str,
        status: int,
        method: str,
        user: str,
        credentials: bool,
        now: float,
    ) -> Decision | None:
        if 200 <= status < 300:
            # only a login that worked: a 2xx to a request without
            # credentials proves nothing (an OPTIONS naming the account
            # would wipe a guesser's count between its guesses)
            if credentials:
                self._succeeded(host, user, now)
            return None
        kind = failure(status, method, credentials)
        failed, not_found = kind == LOGIN_FAILED, kind == NOT_FOUND
        refused = failed or not_found or (status in FAILED and method in ("REGISTER", "INVITE"))
        if not refused:
            return None
        line = f"{status} to {method} for {user or '?'}" + (
            " with credentials" if credentials else ""
        )
        return self._refused(host, failed, not_found, user, now, line)

    def report(self, host: str, kind: str, user: str, now: float, evidence: str) -> Decision | None:
        """What a PBX reported elsewhere than in an answer (a log line):
        ``kind`` is ``LOGIN_FAILED``, ``NOT_FOUND`` or ``LOGGED_IN``;
        ``evidence`` is the line's words for the ban's evidence. Counted as
        an answer saying the same would be."""
        if kind == LOGGED_IN:
            self._succeeded(host, user, now)
            return None
        if kind not in (LOGIN_FAILED, NOT_FOUND):
            raise ValueError(f"{kind!r}: report {LOGIN_FAILED}, {NOT_FOUND} or {LOGGED_IN}")
        return self._refused(host, kind == LOGIN_FAILED, kind == NOT_FOUND, user, now, evidence)

    def _refused(
        self, host: str, failed: bool, not_found: bool, user: str, now: float, line: str
    ) -> Decision | None:
        tap = self.tap
        if tap is not None and (failed or not_found or user):
            tap(host, LOGIN_FAILED if failed else NOT_FOUND if not_found else REFUSED, user, now)
        packed = self._sources.get(host)
        failures, not_found_at, pending, evidence = (
            _EMPTY if packed is None else marshal.loads(packed)
        )
        # (the time is worded only if a ban is made: most refusals are a
        # phone's first challenge, and formatting a date each was a cost)
        evidence = (*evidence[1 - EVIDENCE_KEPT :], (now, line))
        if failed:
            failures = self._failed(user, failures, now)
            decision = self._judge_failures(host, failures, evidence, now)
            if decision is not None:
                return decision
        decision = None
        if not_found:
            recent = [t for t in not_found_at if now - t < self.findtime]
            not_found_at = (*last(recent, self.enumeration - 1), now)
            if len(not_found_at) >= self.enumeration:
                decision = self._decide(
                    host,
                    "enum.not-found",
                    f"{len(not_found_at)} unknown users or extensions within {span(self.findtime)}",
                    "progressive",
                    evidence,
                )
        if user and decision is None:
            window = self.users_window
            pending = (*(p for p in pending if p[0] != user and now - p[1] < window), (user, now))
            if len(pending) >= self.distinct_users:
                decision = self._decide(
                    host,
                    "enum.users",
                    f"{len(pending)} different users refused within {span(self.users_window)}",
                    "progressive",
                    evidence,
                )
            pending = pending[-self.distinct_users :]
        if decision is None:
            self._store(host, (failures, not_found_at, pending, evidence))
        return decision

    # -------------------------------------------------------------- inside

    def _failed(
        self, user: str, failures: tuple[tuple[float, str], ...], now: float
    ) -> tuple[tuple[float, str], ...]:
        """One more failed login: the account's count, and the source's
        failures kept (those either time needs)."""
        if user:
            self.accounts.put(user, (self.accounts.get(user) or 0) + 1)
        keep, horizon = self.maxretry, self.findtime  # what is kept: what either time needs
        if self.quiet is not None:
            keep = max(keep, self.quiet_maxretry or 0)
            horizon = max(horizon, self.quiet_findtime or 0)
        recent = [f for f in failures if now - f[0] < horizon]
        return (*last(recent, keep - 1), (now, user))

    def _judge_failures(
        self,
        host: str,
        failures: tuple[tuple[float, str], ...],
        evidence: tuple[tuple[float, str], ...],
        now: float,
    ) -> Decision | None:
        """The ban ``failures`` earn now, if any."""
        maxretry, findtime, when = self.maxretry, self.findtime, ""
        if self.quiet is not None and self.quiet(now):
            maxretry = self.quiet_maxretry or maxretry
            findtime = self.quiet_findtime or findtime
            when = " in quiet time"
        fails = [f for f in failures[-maxretry:] if now - f[0] < findtime]
        if len(fails) < maxretry:
            return None
        accounts = sorted({u for _, u in fails if u})
        whom = f" for {', '.join(accounts[:3])}" + ("..." if len(accounts) > 3 else "")
        if now - fails[0][0] <= self.burst:
            return self._decide(
                host,
                "auth.brute-force",
                f"{len(fails)} failed logins{whom} within {span(now - fails[0][0])}{when}",
                "progressive",
                evidence,
            )
        return self._decide(
            host,
            "auth.failures",
            f"{len(fails)} failed logins{whom} within {span(findtime)}{when}"
            " (at a phone's pace: a fixed, short ban)",
            self.slow_bantime,
            evidence,
        )

    def _decide(
        self,
        host: str,
        detector: str,
        reason: str,
        duration: float | Literal["progressive"],
        evidence: tuple[tuple[float, str], ...],
    ) -> Decision:
        self._sources.pop(host)  # asked once: the ban book counts the offences
        worded = tuple(f"{utc(when)} {line}" for when, line in evidence)
        return Decision(host, detector, reason, duration, worded)

    def _succeeded(self, host: str, user: str, now: float) -> None:
        tap = self.tap
        if tap is not None and user:
            tap(host, LOGGED_IN, user, now)
        packed = self._sources.peek(host)
        if packed is None:
            return
        failures, not_found_at, pending, evidence = marshal.loads(packed)
        pending = tuple(p for p in pending if p[0] != user)
        failures = tuple(f for f in failures if f[1] != user)
        self._sources.put(host, marshal.dumps((failures, not_found_at, pending, evidence)))

    def _store(self, host: str, src: _Source) -> None:
        """``host``'s state, now its most recently touched (one of the least
        recently touched forgotten past ``max_sources``, which a reload sets)."""
        self._sources.limit = self.max_sources
        self._sources.put(host, marshal.dumps(src))


def failure(status: int, method: str, credentials: bool) -> str | None:
    """What a final answer says of its request (see the module doc):
    ``LOGIN_FAILED`` (401/403/407 to a request with credentials),
    ``NOT_FOUND`` (404 to REGISTER, or to an INVITE without credentials), or
    None (a challenge, a success, anything else)."""
    if status in FAILED and credentials:
        return LOGIN_FAILED
    if status == 404 and (method == "REGISTER" or (method == "INVITE" and not credentials)):
        return NOT_FOUND
    return None
