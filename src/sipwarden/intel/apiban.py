"""APIBAN: addresses seen by a network of SIP honeypots, fetched politely.

Operations: ``sipwarden intel sync`` runs one sync to completion (with a
progress bar); the daemon runs one every few minutes, off the packet path.
Each run pages from the kept ID to the end of the list, stores each page as
it comes, and stops; a restart resumes from the kept ID.

Goals, from APIBAN's API (``tests/data/apiban/API.md``) and the official
clients' bugs:

- Never exceed the rate limit (11 requests per 120 s per key): a sliding
  window of our own request times, kept across runs and restarts; a 429
  backs off a whole window and retries the same ID; a few 429s end the run.
- Every loop bounded: at most ``requests_per_run`` requests per run, a page must
  move the ID forward, a few errors end the run (the next scheduled run tries
  again; no retry storm). A 403 ends the run at once: "APIBAN refused the key".
- Every response variant: ``ipaddress`` a string or a list; the end of the
  list from ``ID == "none"`` or the text "no new bans", whatever the status.
  Bad addresses in a page are counted and skipped; malformed bodies are
  counted, and the list kept so far stays.
- IPv4 and IPv6, one canonical spelling (``/32`` only ever stripped, never
  appended); unroutable addresses (loopback, private, ...) skipped.
- Entries expire 7 days after they were last listed; everything is pulled
  again from "100" every 7 days (re-listed entries are renewed).
- The key is secret: v2 sends it in a header; v1 puts it in the URL path, so
  every URL shown (errors, logs, ``repr``) is redacted, httpx's own request
  log included.

Plan: ``ApibanSync`` is the sans-I/O core (the clock is passed in): it says
what to do next (``next_request(now)``: a ``Request``, a ``Wait`` or
``Done``) and takes the answer (``take(status, body, now)``, or
``failed(error, now)`` when the request did not complete). ``fetch.apiban.ApibanClient``
is the thin httpx adapter: it runs a sync to completion, writing each page to
the ``IntelStore`` on a thread.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

from .. import __version__
from ..values import FeedState

log = logging.getLogger("sipwarden.intel")

BASE: Final = "https://apiban.org/api/"
FIRST_ID: Final = "100"
DAY: Final = 86400.0
MAX_BODY: Final = 1 << 20  # bytes; a page of 250 addresses is about 10 kB
MAX_PAGE: Final = 10_000  # addresses taken from one page (APIBAN sends 250)
MAX_ID_CHARS: Final = 20
END_TEXTS: Final = ("no new bans",)
RATE_TEXT: Final = "rate limit exceeded"


@dataclass(frozen=True)
class ApibanSettings:
    key: str = field(repr=False)
    base: str = BASE
    version: Literal[1, 2] = 2
    set: Literal["sip", "http", "all"] = "sip"  # v2 only; v1 is SIP only
    rate_requests: int = 11  # at most this many requests ...
    rate_window: float = 120.0  # ... in any window of this many seconds
    rate_slack: float = 2.0  # seconds added to waits (clock skew, transit)
    backoff_429: float | None = None  # None: a whole window (plus slack)
    max_rate_limited: int = 3  # 429s in one run before it gives up
    error_backoff: float = 30.0  # first wait after an error; doubles
    max_errors: int = 3  # errors (HTTP, transport, malformed) in one run
    requests_per_run: int = 200  # 50,000 addresses
    entry_life: float = 7 * DAY
    full_pull_every: float | None = 7 * DAY  # None: never start over from "100"
    max_entries: int = 1_000_000
    public_only: bool = True  # skip loopback, private, link-local, ... addresses
    timeout: float = 30.0  # seconds per request
    verify: bool = True  # TLS certificate check

    def __post_init__(self) -> None:
        if not self.key or not self.key.strip():
            raise ValueError("apiban: a key is required")
        if self.version not in (1, 2):
            raise ValueError("apiban: version is 1 or 2")
        if self.set not in ("sip", "http", "all"):
            raise ValueError("apiban: set is 'sip', 'http' or 'all'")
        if self.version == 1 and self.set != "sip":
            raise ValueError("apiban: API v1 serves the 'sip' set only")
        if self.rate_requests < 1 or self.rate_window <= 0 or self.rate_slack < 0:
            raise ValueError("apiban: the rate limit needs requests >= 1 and a window > 0")
        if self.requests_per_run < 1 or self.max_errors < 1 or self.max_rate_limited < 1:
            raise ValueError("apiban: the per-run bounds must be at least 1")
        if not self.base.endswith("/"):
            object.__setattr__(self, "base", self.base + "/")

    @property
    def feed(self) -> str:
        """The store's name for this feed (each set pages on its own)."""
        return f"apiban:{self.set}"

    def redact(self, text: str) -> str:
        """``text`` with the key (as is and URL-quoted) blotted out."""
        for secret in {self.key, quote(self.key, safe="")}:
            text = text.replace(secret, "<key>")
        return text


@dataclass(frozen=True, repr=False)
class Request:
    method: Literal["GET", "POST"]
    url: str  # v1: holds the key; show ``safe_url``
    safe_url: str
    id: str  # the ID asked for
    headers: Mapping[str, str] = field(default_factory=dict)  # v2: holds the key
    json: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.safe_url} id={self.id})"


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str  # "pacing", "rate limited", "error"


@dataclass(frozen=True)
class Done:
    ok: bool
    reason: str  # "up to date", "request bound", "refused", "rate limited", ...
    error: str | None = None


Step = Request | Wait | Done


@dataclass(frozen=True)
class Progress:
    """For a progress bar: APIBAN does not say how long its list is, but an
    ID is a time and the list spans the last 7 days, so ``fraction``
    estimates how far along the list the run is."""

    requests: int
    max_requests: int
    added: int  # new addresses this run
    total: int  # entries held
    last_id: str
    fraction: float | None
    waiting: float  # seconds of the current wait (0 when not waiting)
    status: str


@dataclass(frozen=True)
class SyncResult:
    """``ok``: no error (a run that reached a bound is ok, and the next one
    goes on from there); ``complete``: it reached the end of the list."""

    ok: bool
    reason: str
    error: str | None
    requests: int
    added: int
    seen: int  # addresses listed this run (new or renewed)
    expired: int
    total: int
    last_id: str
    seconds: float

    @property
    def complete(self) -> bool:
        return self.reason == "up to date"


class ApibanSync:
    """The sans-I/O core: paging state, pacing, parsing; no sockets, no clock."""

    def __init__(
        self,
        config: ApibanSettings,
        state: FeedState | None = None,
        entries: Mapping[str, float] | None = None,
    ) -> None:
        self.config = config
        state = state or FeedState()
        self.last_id = state.last_id if _numeric(state.last_id) else FIRST_ID
        self.last_success = state.last_success
        self.last_error = state.last_error
        self.last_error_at = state.last_error_at
        self.last_full = state.last_full
        self.entries: dict[str, float] = dict(entries or {})  # address -> last seen
        self.counters: Counter[str] = Counter()
        self._sent: deque[float] = deque(sorted(state.sent)[-config.rate_requests :])
        self._seen: dict[str, float] = {}  # to write: address -> last seen
        self._removed: set[str] = set()  # to write: gone
        self._in_flight: Request | None = None
        self._done: Done | None = Done(True, "idle")
        self._retry_at = 0.0
        self._run_started = 0.0
        self._errors = 0
        self._limited = 0
        self.run_requests = 0
        self.run_added = 0
        self.run_seen = 0

    # ---------------------------------------------------------------- runs

    def begin(self, now: float) -> None:
        """Start a run: page from the kept ID (or from "100" when a full
        re-pull is due) to the end of the list."""
        self._done = None
        self._run_started = now
        self._in_flight = None
        self._retry_at = 0.0
        self._errors = self._limited = 0
        self.run_requests = self.run_added = self.run_seen = 0
        every = self.config.full_pull_every
        if self.last_full is None or (every is not None and now - self.last_full >= every):
            self.last_id = FIRST_ID
            self.last_full = now
            self.counters["full-pulls"] += 1

    def stop(self, reason: str, *, ok: bool = True) -> Done:
        """End the run early (the adapter's time bound: the next run goes on
        from the kept ID)."""
        if self._done is None:
            self._done = Done(ok, reason, None if ok else f"APIBAN sync stopped: {reason}")
            self._in_flight = None
        return self._done

    @property
    def done(self) -> Done | None:
        return self._done

    def next_request(self, now: float) -> Step:
        """What to do now. A ``Request`` returned is taken as sent at
        ``now`` (it counts against the rate limit); answer it with ``take``
        or ``failed`` before asking again."""
        if self._done is not None:
            return self._done
        if self._in_flight is not None:
            raise RuntimeError("apiban: the last request has no answer yet")
        if self.run_requests >= self.config.requests_per_run:
            self.counters["request-bound"] += 1
            return self._finish(Done(True, "request bound"))
        if now < self._retry_at:
            reason = "rate limited" if self._limited else "error"
            return Wait(self._retry_at - now, reason)
        window = self.config.rate_window + self.config.rate_slack
        while self._sent and self._sent[0] <= now - window:
            self._sent.popleft()
        if len(self._sent) >= self.config.rate_requests:
            return Wait(max(self._sent[0] + window - now, 0.001), "pacing")
        request = self._request(self.last_id)
        self._sent.append(now)
        self._in_flight = request
        self.run_requests += 1
        self.counters["requests"] += 1
        return request

    def take(self, status: int, body: bytes, now: float) -> None:
        """The answer to the request in flight."""
        request = self._take_flight()
        data = _json(body)
        ids = data.get("ID") if isinstance(data, dict) else None
        id_text = ids.strip().lower() if isinstance(ids, str) else None
        texts, addresses = _split(data.get("ipaddress") if isinstance(data, dict) else None)
        if status == 429 or RATE_TEXT in texts:
            self._rate_limited(now)
            return
        if status == 403 or (id_text == "unauthorized" and status >= 400):
            self.counters["refused"] += 1
            self._error(f"APIBAN refused the key (HTTP {status})", now)
            self._finish(Done(False, "refused", self.last_error))
            return
        if not isinstance(data, dict) or (not isinstance(ids, str) and "ipaddress" not in data):
            self.counters["malformed"] += 1
            what = "a malformed body" if status < 400 else "an error"
            self._failure(f"APIBAN answered HTTP {status} with {what}", now)
            return
        end = id_text == "none" or any(t in END_TEXTS for t in texts)
        if not end and not (isinstance(ids, str) and _numeric(ids.strip())):
            self.counters["malformed"] += 1
            self._failure(f"APIBAN answered HTTP {status} without a usable ID", now)
            return
        seen_at = now
        if not end:
            assert isinstance(ids, str)
            next_id = ids.strip()
            moment = float(next_id)  # the time of the next entry: the page's are older
            if now - self.config.entry_life < moment <= now:
                seen_at = moment
        self._take_addresses(addresses, seen_at)
        self.counters["pages"] += 1
        if end:
            self.counters["ends"] += 1
            self.last_success = now
            self.last_error = None
            self._finish(Done(True, "up to date"))
            return
        if int(next_id) <= int(request.id):
            self.counters["stuck"] += 1
            self._error(
                f"APIBAN's ID did not move forward (asked {request.id}, got {next_id})", now
            )
            self._finish(Done(False, "stuck", self.last_error))
            return
        self.last_id = next_id
        self._errors = self._limited = 0

    def failed(self, error: str, now: float) -> None:
        """The request in flight did not complete (timeout, refused
        connection, ...); ``error`` must not hold the key."""
        self._take_flight()
        self.counters["transport-errors"] += 1
        self._failure(self.config.redact(error), now)

    # ------------------------------------------------------------- entries

    def expire(self, now: float) -> list[str]:
        """Drop the entries last listed ``entry_life`` ago or more."""
        cutoff = now - self.config.entry_life
        gone = [a for a, seen in self.entries.items() if seen <= cutoff]
        for address in gone:
            del self.entries[address]
            self._seen.pop(address, None)
            self._removed.add(address)
        self.counters["expired"] += len(gone)
        return gone

    def state(self) -> FeedState:
        return FeedState(
            self.last_id,
            self.last_success,
            self.last_error,
            self.last_error_at,
            self.last_full,
            tuple(self._sent),
        )

    def drain(self) -> tuple[dict[str, float], list[str]]:
        """What to write: (address -> last seen, addresses gone)."""
        seen, removed = self._seen, sorted(self._removed)
        self._seen, self._removed = {}, set()
        return seen, removed

    def progress(self, waiting: float = 0.0, status: str = "") -> Progress:
        fraction = None
        if self._done is not None and self._done.reason == "up to date":
            fraction = 1.0
        elif _numeric(self.last_id) and self.last_id != FIRST_ID:
            # the list spans the entry life up to now: the ID's place in it
            start = self._run_started - self.config.entry_life
            fraction = min(max((float(self.last_id) - start) / self.config.entry_life, 0.0), 1.0)
        elif self.last_id == FIRST_ID:
            fraction = 0.0
        return Progress(
            self.run_requests,
            self.config.requests_per_run,
            self.run_added,
            len(self.entries),
            self.last_id,
            fraction,
            waiting,
            status or (self._done.reason if self._done else "syncing"),
        )

    # -------------------------------------------------------------- inside

    def _request(self, id_: str) -> Request:
        cfg = self.config
        if cfg.version == 1:
            path = "banned" if id_ == FIRST_ID else f"banned/{quote(id_, safe='')}"
            url = f"{cfg.base}{quote(cfg.key, safe='')}/{path}"
            return Request(
                "GET",
                url,
                cfg.redact(url),
                id_,
                {"Accept": "application/json", "User-Agent": f"sipwarden/{__version__}"},
            )
        return Request(
            "POST",
            f"{cfg.base}get",
            f"{cfg.base}get",
            id_,
            {
                "Authorization": f"Bearer {cfg.key}",
                "Accept": "application/json",
                "User-Agent": f"sipwarden/{__version__}",
            },
            {"set": cfg.set, "id": id_},
        )

    def _take_flight(self) -> Request:
        if self._in_flight is None:
            raise RuntimeError("apiban: no request in flight")
        request, self._in_flight = self._in_flight, None
        return request

    def _take_addresses(self, raw: list[str], seen_at: float) -> None:
        if len(raw) > MAX_PAGE:
            self.counters["page-overflow"] += len(raw) - MAX_PAGE
            raw = raw[:MAX_PAGE]
        for text in raw:
            address = _address(text, self.config.public_only)
            if address is None:
                self.counters["bad-addresses"] += 1
                continue
            old = self.entries.get(address)
            if old is None:
                if len(self.entries) >= self.config.max_entries:
                    self.counters["full"] += 1
                    continue
                self.run_added += 1
                self.counters["added"] += 1
            self.run_seen += 1
            when = seen_at if old is None else max(old, seen_at)
            self.entries[address] = when
            self._seen[address] = when
            self._removed.discard(address)

    def _rate_limited(self, now: float) -> None:
        self.counters["rate-limited"] += 1
        self._limited += 1
        self._error("APIBAN rate limit exceeded (HTTP 429)", now)
        if self._limited >= self.config.max_rate_limited:
            self._finish(Done(False, "rate limited", self.last_error))
            return
        backoff = self.config.backoff_429
        if backoff is None:
            backoff = self.config.rate_window + self.config.rate_slack
        self._retry_at = now + backoff

    def _failure(self, message: str, now: float) -> None:
        self._errors += 1
        self._error(message, now)
        if self._errors >= self.config.max_errors:
            self._finish(Done(False, "errors", message))
            return
        self._retry_at = now + self.config.error_backoff * 2 ** (self._errors - 1)

    def _error(self, message: str, now: float) -> None:
        self.last_error = self.config.redact(message)
        self.last_error_at = now

    def _finish(self, done: Done) -> Done:
        self._done = done
        return done


# ----------------------------------------------------------------- parsing


def _json(body: bytes) -> Any:
    if len(body) > MAX_BODY:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _split(value: object) -> tuple[list[str], list[str]]:
    """``ipaddress`` (a string or a list) as (the texts such as "no new
    bans", lowercased; the rest: address candidates)."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    texts: list[str] = []
    addresses: list[str] = []
    for item in items:
        if not isinstance(item, str):
            addresses.append(repr(item)[:50])  # counted as a bad address
            continue
        low = item.strip().lower()
        if low in (*END_TEXTS, RATE_TEXT, "none", "not blocked"):
            texts.append(low)
        else:
            addresses.append(item)
    return texts, addresses


def _numeric(text: str) -> bool:
    return 0 < len(text) <= MAX_ID_CHARS and text.isascii() and text.isdigit()


def _address(text: str, public_only: bool) -> str | None:
    """The canonical spelling of an address (a ``/32`` or ``/128`` taken as
    the address; an IPv4-mapped IPv6 address as IPv4); None if it is not one
    (or, with ``public_only``, if it is not a public unicast address)."""
    text = text.strip()
    if not text or len(text) > 64 or "%" in text:
        return None
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None
    if net.num_addresses != 1:
        return None
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address = net.network_address
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if public_only and (not addr.is_global or addr.is_multicast):
        return None
    return str(addr)


def check_request(config: ApibanSettings, address: str) -> Request:
    """The request asking whether APIBAN lists ``address``."""
    headers = {"Accept": "application/json", "User-Agent": f"sipwarden/{__version__}"}
    if config.version == 1:
        url = f"{config.base}{quote(config.key, safe='')}/check/{quote(address, safe='')}"
        return Request("GET", url, config.redact(url), "", headers)
    headers["Authorization"] = f"Bearer {config.key}"
    url = f"{config.base}check"
    return Request("POST", url, url, "", headers, {"set": config.set, "ipaddress": address})


def parse_check(status: int, body: bytes) -> bool | None:
    """Listed (True), not listed (False), or no answer (None: refused, rate
    limited, a malformed address or body)."""
    data = _json(body)
    if status in (403, 429) or not isinstance(data, dict):
        return None
    texts, addresses = _split(data.get("ipaddress"))
    if "not blocked" in texts:
        return False
    if addresses and isinstance(data.get("ID"), str) and _numeric(data["ID"].strip()):
        return True
    return None


__all__ = [
    "ApibanSettings",
    "ApibanSync",
    "Done",
    "Progress",
    "Request",
    "SyncResult",
    "Wait",
    "check_request",
    "parse_check",
]
