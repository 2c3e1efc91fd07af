"""The one validated configuration model (TOML).

Every error names the key, the value and what would be valid, e.g.
``edge.listen[1]: 'sctp:0.0.0.0:5060' is not a listen address: use
udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT (IPv6 as [::1])``.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .values import MAX_DURATION

Transport = Literal["udp", "tcp", "tls"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")


class ConfigError(Exception):
    """A configuration that cannot be used; the message says which key and why."""


class Endpoint(NamedTuple):
    """``udp:127.0.0.1:5060`` as (transport, host, port); host is an IP literal."""

    transport: Transport
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

    @property
    def family_v6(self) -> bool:
        return ":" in self.host


def parse_endpoint(text: str, *, allow_port_zero: bool = False) -> Endpoint:
    """Parse ``transport:host:port`` (IPv6 hosts in brackets). Raises ValueError."""
    usage = "use udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT with an IP address (IPv6 as [::1])"
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an address: {usage}")
    transport, sep, rest = text.partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise ValueError(f"{text!r} has no transport udp:, tcp: or tls:: {usage}")
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise ValueError(f"{text!r}: {usage}")
        port_text = port_text[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"{text!r}: {usage}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address; {usage}") from None
    if not port_text.isdigit() or not (0 if allow_port_zero else 1) <= int(port_text) <= 65535:
        low = 0 if allow_port_zero else 1
        raise ValueError(f"{text!r}: the port must be a number from {low} to 65535")
    return Endpoint(transport, ip.compressed, int(port_text))


ListenEndpoint = Annotated[
    Endpoint,
    BeforeValidator(
        lambda v: v if isinstance(v, Endpoint) else parse_endpoint(v, allow_port_zero=True)
    ),
]
BackendEndpoint = Annotated[
    Endpoint, BeforeValidator(lambda v: v if isinstance(v, Endpoint) else parse_endpoint(v))
]


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return _HOSTNAME.fullmatch(text) is not None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReflectionConfig(_Section):
    """``[edge.reflection]``: the reflection budget. To a source that has not
    shown it receives at its address (a TCP handshake, our nonce in its
    digest answer, our To tag in its next request), answers over UDP add up
    to at most ``ratio`` times the bytes it sent, so that the edge never
    amplifies a spoofed request; what it holds back is counted
    (``status``: edge ``reflection-withheld``)."""

    enabled: bool = True
    ratio: float = Field(default=1.5, ge=0.5, le=10.0)  # answer bytes per byte received
    # bytes a second to all unverified sources together, per worker; 0: no total
    total: int = Field(default=1_048_576, ge=0)
    verified_for: Duration = 3600.0  # how long a proof holds
    max_sources: int = Field(default=65_536, ge=1)  # unverified sources tracked
    max_verified: int = Field(default=65_536, ge=1)  # verified sources remembered


class EdgeConfig(_Section):
    """``[edge]``: where sipwarden listens and the PBX it protects. A config
    file without ``[edge]``, or with ``listen = []``, has no edge (the
    embedded defaults, no file at all, keep the loopback edge of the demo)."""

    listen: list[ListenEndpoint] = Field(
        default_factory=lambda: [
            parse_endpoint("udp:127.0.0.1:5060"),
            parse_endpoint("tcp:127.0.0.1:5060"),
        ],
    )
    backend: BackendEndpoint = Field(default_factory=lambda: parse_endpoint("udp:127.0.0.1:5080"))
    domains: list[str] = Field(default_factory=list)
    # The host (name or IP) clients are told to send to, in Record-Route and
    # Path; by default the address of the listener a message arrived on.
    advertise: str | None = None
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    # CA bundle for a tls: backend's certificate (default: the system's CAs)
    backend_ca_file: Path | None = None
    # What replaces the backend's Server and User-Agent headers; "" removes them.
    server_header: str = ""
    max_message_size: int = Field(default=65_535, ge=1024, le=1_048_576)
    idle_timeout: float = Field(default=600.0, gt=0)
    message_timeout: float = Field(default=10.0, gt=0)  # a started message must finish (slowloris)
    tls_handshake_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=10_000, ge=1)
    max_connections_per_source: int = Field(default=32, ge=1)
    max_forwards: int = Field(default=70, ge=1, le=255)  # when a request has none
    # Processes sharing the listening ports (SO_REUSEPORT); each has its own
    # socket towards the backend. More than one needs fixed listen ports.
    workers: int = Field(default=1, ge=1, le=64)
    # The key that signs flow tokens in Path/Record-Route: kept across restarts
    # so registered phones stay reachable. Created (mode 0600) if missing.
    flow_key_file: Path = Path("sipwarden.key")
    reflection: ReflectionConfig = Field(default_factory=ReflectionConfig)

    @field_validator("domains")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for i, host in enumerate(value):
            if not _is_host(host):
                raise ValueError(f"entry [{i}], {host!r}, is not a host name or an IP address")
        return value

    @field_validator("advertise")
    @classmethod
    def _advertised_host(cls, value: str | None) -> str | None:
        if value is not None and not _is_host(value):
            raise ValueError(
                f"{value!r} is not a host name or an IP address (it goes into Via and Record-Route)"
            )
        return value

    @field_validator("server_header")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\0") or value != value.strip():
            raise ValueError(
                "one line of text without leading or trailing spaces (it becomes a header value)"
            )
        return value

    @model_validator(mode="after")
    def _workers_need_fixed_ports(self) -> EdgeConfig:
        if self.workers > 1 and not self.listen:
            raise ValueError(
                f"edge.workers = {self.workers} with no edge (edge.listen = []): workers share"
                " the edge's ports; use 1, or give edge.listen (host mode runs in one process)"
            )
        if self.workers > 1 and any(ep.port == 0 for ep in self.listen):
            raise ValueError(
                "edge.workers > 1 needs fixed ports in edge.listen (port 0 picks one per worker)"
            )
        return self

    @model_validator(mode="after")
    def _tls_needs_a_certificate(self) -> EdgeConfig:
        uses_tls = (
            any(ep.transport == "tls" for ep in self.listen) or self.backend.transport == "tls"
        )
        if uses_tls and (self.tls_certificate is None or self.tls_key is None):
            raise ValueError(
                "a tls: listener or backend needs edge.tls_certificate and edge.tls_key"
            )
        return self


Port = Annotated[int, Field(ge=1, le=65535)]


class HostConfig(_Section):
    """``[host]``: host mode (``hostmode/``): protect a PBX on this machine in
    place. The kernel sends the PBX's inbound SIP to an NFQUEUE (after the
    bans', feeds' and lane's drops) and sipwarden gives each packet a verdict;
    the PBX's answers go through a second queue, read (failed logins,
    enumeration) and accepted. Needs root (CAP_NET_ADMIN)."""

    enabled: bool = False
    ports: list[Port] = Field(default_factory=lambda: [5060])  # the PBX's SIP ports, UDP and TCP
    tls_ports: list[Port] = Field(default_factory=lambda: [5061])  # TLS: judged by source only
    # when sipwarden is not reading the queue (stopped, crashed) or it is
    # full: "open" lets the PBX's traffic pass, "closed" drops it
    fail: Literal["open", "closed"] = "open"
    # the NFQUEUE numbers: `queue` the PBX's inbound packets, `queue + 1` its answers
    queue: int = Field(default=5060, ge=0, le=65534)
    queue_length: int = Field(default=4096, ge=16, le=1_000_000)  # packets the kernel holds for us
    # how packets reach the queue: nft's `queue` statement needs CONFIG_NFT_QUEUE,
    # else the iptables NFQUEUE target; "auto" tries nft first
    kernel: Literal["auto", "nftables", "iptables"] = "auto"

    @model_validator(mode="after")
    def _ports_apart(self) -> HostConfig:
        both = sorted(set(self.ports) & set(self.tls_ports))
        if both:
            raise ValueError(
                f"host.tls_ports: {both} also in host.ports: a port is either read (ports)"
                " or judged by source only (tls_ports), not both"
            )
        if self.enabled and not self.ports and not self.tls_ports:
            raise ValueError("host.ports = []: host mode needs at least one port of the PBX")
        return self


class PolicyConfig(_Section):
    """``[policy]``: who is trusted, which rules apply, and the built-in switches."""

    # Trunks and offices: IPs, CIDRs or host names (resolved at load and on
    # reload). They are allowed before any rule, limit or ban looks at them.
    trusted_peers: list[str] = Field(default_factory=list)
    # Operator rule files ([[rule]] tables, see README.md), relative to this
    # config file; glob patterns such as "rules.d/*.toml" are expanded.
    rule_files: list[str] = Field(default_factory=list)
    # Rules written in the config itself, as [[policy.rules]] tables.
    rules: list[dict[str, Any]] = Field(default_factory=list)
    pack: bool = True  # the built-in scanner pack (`sipwarden rules list`)
    disable: list[str] = Field(default_factory=list)  # pack or operator rule ids
    monitor: list[str] = Field(default_factory=list)  # ids to count and log only
    enforce: list[str] = Field(default_factory=list)  # ids shipped in monitor mode to enforce
    # "monitor": a first deployment's dry run: every message is judged, counted,
    # logged and recorded, and forwarded as if allowed; would-be bans are events
    # ("would-ban"), never bans. "enforce": the verdicts are carried out.
    mode: Literal["enforce", "monitor"] = "enforce"
    # OPTIONS from anyone but a trusted peer: "drop" silently (scanners probe
    # with OPTIONS) or "forward" to the PBX.
    options: Literal["drop", "forward"] = "drop"
    sanity: bool = True  # drop messages that fail the sanity checks (README.md)
    max_uri_length: int = Field(default=1024, ge=64, le=65_535)

    @field_validator("trusted_peers")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        for i, peer in enumerate(value):
            try:
                network = ipaddress.ip_network(peer, strict=False)
            except ValueError:
                if not isinstance(peer, str) or not _HOSTNAME.fullmatch(peer):
                    raise ValueError(
                        f"entry [{i}], {peer!r}, is not an IP address, a CIDR or a host name"
                    ) from None
            else:
                _not_too_wide(i, peer, network, "trusted (never scanned, limited or banned)")
        return value

    @model_validator(mode="after")
    def _one_mode_per_rule(self) -> PolicyConfig:
        lists = {"disable": self.disable, "monitor": self.monitor, "enforce": self.enforce}
        seen: dict[str, str] = {}
        for key, ids in lists.items():
            for rule_id in ids:
                if rule_id in seen and seen[rule_id] != key:
                    raise ValueError(f"rule {rule_id!r} is in both {seen[rule_id]} and {key}")
                seen[rule_id] = key
        return self


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_DURATION_USAGE = "a number of seconds or a duration such as 30s, 10m, 1h, 1d, 2w"


def parse_duration(value: Any, *, permanent: bool = False) -> float | None:
    """``600``, ``"10m"``, ``"1h"``, ``"1d"``; ``"permanent"`` (None) where
    ``permanent`` allows it. Raises ValueError saying what is valid."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: use {_DURATION_USAGE}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and permanent and value.strip().lower() == "permanent":
        return None
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip().lower())):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        also = ' or "permanent"' if permanent else ""
        raise ValueError(f"{value!r} is not a duration: use {_DURATION_USAGE}{also}")
    if not math.isfinite(seconds):  # JSON's NaN and Infinity, TOML's nan and inf
        raise ValueError(f"{value!r} is not a duration: use {_DURATION_USAGE}")
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be more than zero")
    if seconds > MAX_DURATION:
        also = ' (or "permanent")' if permanent else ""
        raise ValueError(f"{value!r}: a duration must be at most 10 years{also}")
    return seconds


def parse_since(text: str, now: float) -> float:
    """The start of a window, as ``--since`` and ``?since=`` take it: a
    duration back from ``now`` (``90``, ``30m``, ``1h``, ``7d``) or an ISO
    8601 time (``2026-12-06T10:00:00Z``; without a zone, UTC). Raises
    ValueError saying what is valid."""
    text = text.strip()
    try:
        return now - float(parse_duration(text) or 0.0)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 1h, 7d) nor an ISO 8601 time"
            " (2026-12-06T10:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


Duration = Annotated[float, BeforeValidator(lambda v: parse_duration(v))]
BanLength = Annotated[float | None, BeforeValidator(lambda v: parse_duration(v, permanent=True))]


# The widest range policy.trusted_peers, bans.allow and bans.deny take: a
# /8 of IPv4 (as 10.0.0.0/8, the widest private range) or a /32 of IPv6
# (an ISP's whole allocation). A wider one is a slip that trusts, or
# drops, a good part of the Internet (0.0.0.0/0: all of it).
WIDEST_PREFIX = {4: 8, 6: 32}


def _not_too_wide(
    i: int, entry: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network, what: str
) -> None:
    widest = WIDEST_PREFIX[network.version]
    if network.prefixlen < widest:
        raise ValueError(
            f"entry [{i}], {entry!r}, is too wide to be {what}: a range may be at most"
            f" a /{WIDEST_PREFIX[4]} of IPv4 (as 10.0.0.0/8) or a /{WIDEST_PREFIX[6]} of IPv6"
        )


def _networks(value: list[str], what: str) -> list[str]:
    for i, entry in enumerate(value):
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except (ValueError, TypeError):
            raise ValueError(f"entry [{i}], {entry!r}, is not an IP address or a CIDR") from None
        _not_too_wide(i, entry, network, what)
    return value


class BansConfig(_Section):
    """``[bans]``: how long bans last, and who is never or always banned."""

    # the n-th ban of a target within `memory` lasts steps[n-1]; the last repeats
    steps: list[BanLength] = Field(
        default_factory=lambda: [600.0, 3600.0, 86400.0, None], min_length=1
    )
    memory: Duration = 30 * 86400.0
    allow: list[str] = Field(default_factory=list)  # never banned (trusted peers are added)
    deny: list[str] = Field(default_factory=list)  # always dropped
    max_bans: int = Field(default=1_000_000, ge=1)
    # the widest network any ban or feed entry may cover (a /0 would cut off
    # everything): a shorter prefix is refused, however the ban is asked for
    widest_v4: int = Field(default=8, ge=1, le=32)
    widest_v6: int = Field(default=32, ge=1, le=128)

    _allow = field_validator("allow")(classmethod(lambda cls, v: _networks(v, "never banned")))
    _deny = field_validator("deny")(classmethod(lambda cls, v: _networks(v, "always dropped")))


class FailuresConfig(_Section):
    """``[failures]``: failed logins and enumeration, read off the backend's answers."""

    enabled: bool = True
    maxretry: int = Field(default=5, ge=1)  # failed logins within findtime: a ban
    findtime: Duration = 600.0
    burst: Duration = 60.0  # maxretry failures within this: brute force (progressive ban)
    slow_bantime: Duration = 600.0  # slower (a phone with an old password): this, fixed
    enumeration: int = Field(default=10, ge=1)  # 404s to REGISTER/INVITE within findtime
    distinct_users: int = Field(default=10, ge=2)  # users refused within users_window
    users_window: Duration = 60.0
    # The backend's 404 to REGISTER (and to an INVITE without credentials)
    # becomes the 401 challenge a real user gets (Asterisk's alwaysauthreject).
    uniform_answers: bool = True
    max_sources: int = Field(default=100_000, ge=1)


class LimitsConfig(_Section):
    """``[limits]``: request rates per source (Kamailio's pike, per method too)."""

    enabled: bool = True
    window: Duration = 2.0
    requests: int = Field(default=100, ge=1)  # any method, per window
    methods: dict[str, int] = Field(default_factory=lambda: {"REGISTER": 20, "INVITE": 20})
    prefix_v4: int = Field(default=32, ge=8, le=32)  # 24: count (and ban) per /24
    prefix_v6: int = Field(default=64, ge=16, le=128)  # one customer gets a /64
    max_sources: int = Field(default=100_000, ge=1)

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: dict[str, int]) -> dict[str, int]:
        return _method_limits(value)


def _method_limits(value: dict[str, int]) -> dict[str, int]:
    for method, count in value.items():
        if not re.fullmatch(r"[A-Z]+", method):
            raise ValueError(f"{method!r} is not a SIP method name in capitals (REGISTER)")
        if count < 1:
            raise ValueError(f"{method} = {count}: a limit must be at least 1")
    return value


class StorageConfig(_Section):
    """``[storage]``: where bans (and later events) are kept."""

    path: Path = Path("sipwarden.db")


class LaneConfig(_Section):
    """``[firewall.lane]``: the kernel's pre-filter on the edge's SIP ports
    (``enforce/lane.py``; needs enforcer = "nftables"): sources that logged
    in, trusted peers and the allow list pass first; unknown sources are held
    to a rate per prefix and in total, so a spoofed flood never fills the
    edge's socket and starves the phones."""

    enabled: bool = True
    # packets a second from unknown sources, per prefix and all together; the
    # total, absent: 1,000 per edge worker, a quarter of what one worker
    # relayed with Kamailio behind it (4,500-5,000 REGISTERs a second on an
    # idle machine, 2,700 on a busy one: bench/flood.py)
    prefix_rate: int = Field(default=200, ge=1, le=10_000_000)
    total_rate: int | None = Field(default=None, ge=1, le=100_000_000)
    prefix_v4: int = Field(default=24, ge=8, le=32)
    prefix_v6: int = Field(default=48, ge=16, le=128)
    # a source that logged in stays known-good this long after its last login
    known_good_timeout: Duration = Field(default=7200.0, ge=60, le=99_999_999)


class DropCountsConfig(_Section):
    """``[firewall.drop_counts]``: the packets the kernel drops for a ban or
    a feed, counted per source (``enforce/drops.py``; needs enforcer =
    "nftables"), so that a banned flood shows in ``sipwarden flows``."""

    enabled: bool = True
    size: int = Field(default=65_536, ge=1, le=16_777_216)  # sources counted apart, per family
    # a source's count is let go this long after its last dropped packet
    idle: Duration = Field(default=600.0, ge=1, le=99_999_999)


class FirewallConfig(_Section):
    """``[firewall]``: how bans reach the kernel."""

    enforcer: Literal["none", "nftables"] = "none"
    table: str = Field(default="sipwarden", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
    # "sip": drop a banned source's traffic to the edge's ports; "all": all of it
    scope: Literal["sip", "all"] = "sip"
    lane: LaneConfig = Field(default_factory=LaneConfig)
    drop_counts: DropCountsConfig = Field(default_factory=DropCountsConfig)


MIN_TOKEN = 16  # characters: an API token shorter than this can be guessed
_TOKEN_USAGE = (
    f"use at least {MIN_TOKEN} printable characters, e.g. the output of `openssl rand -hex 16`"
)


class ApiConfig(_Section):
    """``[api]``: REST under /api/v1, Prometheus metrics at /metrics (later the dashboard)."""

    listen: str = "127.0.0.1:8080"  # "" turns it off; port 0 picks one
    token: str | None = None  # or SIPWARDEN_API_TOKEN; required off loopback
    # neither set: a token made at first start, kept here (0600); default:
    # beside the store (sipwarden.db -> sipwarden.token). See api/token.py.
    token_file: Path | None = None
    # names (or addresses) clients may reach the API by besides its own
    # address and localhost (a reverse proxy's name): the Host check
    hosts: list[str] = []

    @field_validator("token")
    @classmethod
    def _a_secret(cls, value: str | None) -> str | None:
        if not value:  # None or "": no token (as the README's example writes it)
            return value
        if not value.strip():
            raise ValueError(f"a blank token is no secret: {_TOKEN_USAGE}")
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            raise ValueError(
                f"a token is one word, without spaces or control characters (it is sent as"
                f" 'Authorization: Bearer <token>'): {_TOKEN_USAGE}"
            )
        if len(value) < MIN_TOKEN:
            raise ValueError(f"a token of {len(value)} characters is guessable: {_TOKEN_USAGE}")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            api_address(value)
        return value

    @field_validator("token_file", mode="before")
    @classmethod
    def _token_file(cls, value: Any) -> Any:
        return None if value == "" else value  # "": unset, as for token

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for i, host in enumerate(value):
            if not _is_host(host) or host.startswith("["):
                raise ValueError(
                    f"entry [{i}], {host!r}, is not a host name or an IP address"
                    " (no port, scheme or path: e.g. sipwarden.example.com)"
                )
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ApiConfig:
        import os

        if self.listen and not ipaddress.ip_address(api_address(self.listen)[0]).is_loopback:
            if not (self.token or os.environ.get("SIPWARDEN_API_TOKEN")):
                raise ValueError(
                    f"api.listen = {self.listen!r} is not loopback: set api.token"
                    " (or SIPWARDEN_API_TOKEN) so the API is not open to anyone"
                )
        return self


def api_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:8080`` or ``[::1]:8080`` as (host, port)."""
    usage = "use HOST:PORT with an IP address, e.g. 127.0.0.1:8080 or [::1]:8080"
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {usage}") from None
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: {usage}")
    return host, int(port)


class ApibanConfig(_Section):
    """``[intel.apiban]``: APIBAN's list of addresses its honeypots saw."""

    enabled: bool = True  # when a key is set (here or in SIPWARDEN_APIBAN_KEY)
    key: str | None = None  # never logged
    url: str = "https://apiban.org/api/"  # base URL; tests point it at a local mock
    version: Literal["v1", "v2"] = "v2"  # v1 puts the key in the URL path
    set: Literal["sip", "http", "all"] = "sip"
    refresh: Duration = 300.0
    max_requests: int = Field(default=11, ge=1)  # per rate_window: APIBAN's limit
    rate_window: Duration = 120.0
    entry_life: Duration = 7 * 86400.0  # entries not seen again for this long fall out
    full_pull: Duration = 7 * 86400.0  # start again from the beginning this often

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or not value.endswith("/"):
            raise ValueError("an http(s) URL ending in /, e.g. https://apiban.org/api/")
        return value


class FeedConfig(_Section):
    """One ``[[intel.feeds]]``: a URL or a file, one address or CIDR a line."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,40}$")
    url: str | None = None
    path: Path | None = None
    # sent with every request to ``url`` (an API key, another sipwarden's
    # token: {Authorization = "Bearer ..."}); never logged
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    refresh: Duration = 3600.0
    max_entries: int = Field(default=1_000_000, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _one_source(self) -> FeedConfig:
        if (self.url is None) == (self.path is None):
            raise ValueError(f"feed {self.name!r}: give either url or path")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"feed {self.name!r}: url must be http:// or https://")
        if self.headers and self.url is None:
            raise ValueError(f"feed {self.name!r}: headers are for a url")
        for name, value in self.headers.items():
            if not re.fullmatch(r"[A-Za-z0-9-]+", name) or "\n" in value or "\r" in value:
                raise ValueError(f"feed {self.name!r}: headers: {name!r} is not a header line")
        return self


_COUNTRY = re.compile(r"[A-Z]{2}")


class GeoConfig(_Section):
    """``[intel.geoip]``: countries the edge serves (or refuses)."""

    database: Path | None = None  # a MaxMind-format file (GeoLite2-Country, DB-IP lite)
    zones: Path | None = None  # or a directory of country CIDR zone files (xa.zone)
    allow_countries: list[str] = Field(default_factory=list)  # everything else dropped
    deny_countries: list[str] = Field(default_factory=list)
    unknown: Literal["allow", "drop"] = "allow"  # an address no database places
    # walk a MaxMind database into a range table at start (seconds, a few MB)
    # so that a spoofed source costs a bisect, not a record decode
    preload: bool = True

    @field_validator("allow_countries", "deny_countries")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        for i, code in enumerate(value):
            if not isinstance(code, str) or not _COUNTRY.fullmatch(code.upper()):
                raise ValueError(f"entry [{i}], {code!r}, is not a two-letter country code")
        return [c.upper() for c in value]

    @model_validator(mode="after")
    def _one_policy(self) -> GeoConfig:
        if self.allow_countries and self.deny_countries:
            raise ValueError("set allow_countries or deny_countries, not both")
        if (self.allow_countries or self.deny_countries) and not (self.database or self.zones):
            raise ValueError("a country policy needs intel.geoip.database or intel.geoip.zones")
        return self


class IntelConfig(_Section):
    """``[intel]``: known-bad sources (feeds) and country policy."""

    apiban: ApibanConfig = Field(default_factory=ApibanConfig)
    feeds: list[FeedConfig] = Field(default_factory=list)
    geoip: GeoConfig = Field(default_factory=GeoConfig)

    @field_validator("feeds")
    @classmethod
    def _distinct_names(cls, value: list[FeedConfig]) -> list[FeedConfig]:
        seen: set[str] = set()
        for i, feed in enumerate(value):
            if feed.name in seen:
                raise ValueError(
                    f"entry [{i}]: a second feed named {feed.name!r} (names are unique)"
                )
            seen.add(feed.name)
        return value


class ControlConfig(_Section):
    """``[control]``: where `sipwarden reload` and `sipwarden rules list`
    reach the running daemon (a Unix socket, mode 0600)."""

    socket: Path = Path("sipwarden.sock")


class FingerprintRule(_Section):
    """One family's threshold: ``hits`` within ``window`` seconds earn a ban."""

    hits: int = Field(default=10, ge=1, le=1_000_000)
    window: Duration = 60.0


class FingerprintsConfig(_Section):
    """``[fingerprints]``: a source whose packets keep matching the pack's
    scanner fingerprints is banned (progressive), never on a fingerprint
    alone if it logged in (``policy/hostile.py``)."""

    ban: bool = True
    hits: int = Field(default=10, ge=1, le=1_000_000)  # of one family (scan, ua)...
    window: Duration = 60.0  # ...within this: a ban
    # a family's own threshold, e.g. { ua = { hits = 3, window = "60s" } }
    families: dict[str, FingerprintRule] = Field(default_factory=dict)
    max_sources: int = Field(default=100_000, ge=100)


class ObserveConfig(_Section):
    """``[observe]``: events and traffic flows, kept in the store."""

    enabled: bool = True  # off: no events, flows, analysis, alerts or live stream
    events_retention: Duration = 30 * 86400.0  # events older than this are deleted
    events_max_rows: int = Field(default=2_000_000, ge=1000)  # the oldest go first past this
    flows_retention: Duration = 7 * 86400.0
    flows_max_rows: int = Field(default=5_000_000, ge=1000)
    # per (kind, source, reason), between two writes: this many events kept
    # whole, the rest counted in one summary (a flood is a few rows and a count)
    event_sample: int = Field(default=5, ge=1, le=1000)
    max_events: int = Field(default=50_000, ge=100)  # queued between two writes; more are dropped
    max_flows: int = Field(default=100_000, ge=100)  # flows in one minute; more go to one overflow
    write_interval: Duration = Field(default=1.0, le=60)  # events are written this often
    # the kernel's per-source drop counts ([firewall.drop_counts]) read this often (worker 0)
    kernel_drops_every: Duration = Field(default=60.0, ge=1.0, le=3600)
    # the ended minutes' flows appended here as IPFIX-like JSON lines (None: not exported)
    flows_export: Path | None = None


class LoggingConfig(_Section):
    """``[logging]``: how `sipwarden run` writes its log to stderr ("human":
    a line of text; "json": one JSON object per line, for Loki or ELK;
    `run --log-format` overrides it)."""

    format: Literal["human", "json"] = "human"


AlertKind = Literal[
    "verdict",
    "ban",
    "unban",
    "login-failed",
    "feed",
    "finding",
    "health",
    "deception",
    "would-ban",
]
SyslogFacility = Literal[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
]  # fmt: skip
# the keys only one type of target takes (the others are common to all)
ALERT_KEYS = {
    "webhook": ("url", "secret", "secret_file", "secret_env"),
    "email": ("host", "port", "from", "to", "starttls", "tls", "user", "password",
              "password_file", "ca_file"),
    "syslog": ("address", "facility", "format"),
}  # fmt: skip
DEFAULT_ALERT_KINDS: tuple[AlertKind, ...] = ("ban", "finding", "health")  # what a person wants
_MAILBOX = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def syslog_address(text: str) -> tuple[Literal["udp", "tcp", "unix"], str, int]:
    """``udp:HOST:PORT``, ``tcp:HOST:PORT`` (IPv6 in brackets) or an absolute
    Unix socket path (``/dev/log``) as (transport, host or path, port)."""
    usage = "use udp:HOST:PORT, tcp:HOST:PORT or a Unix socket's absolute path such as /dev/log"
    if text.startswith("/"):
        return "unix", text, 0
    transport, _, rest = text.partition(":")
    host, colon, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if transport not in ("udp", "tcp") or not colon or not _is_host(host):
        raise ValueError(f"{text!r} is not a syslog address: {usage}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return ("udp" if transport == "udp" else "tcp"), host, int(port)


class AlertConfig(_Section):
    """One ``[[alerts]]`` target: a webhook (a JSON body signed with
    HMAC-SHA256, ``notify/webhook.py``), a mailbox over SMTP, or syslog;
    the event kinds it wants, and at most one alert per ``min_interval``
    per (kind, reason): the rest is folded into the next one as a count."""

    type: Literal["webhook", "email", "syslog"]
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")
    kinds: list[AlertKind] = Field(default_factory=lambda: list(DEFAULT_ALERT_KINDS))
    # kinds wanted in quiet time only ([schedule]): noise by day, news at night
    quiet_kinds: list[AlertKind] = Field(default_factory=list)
    min_interval: Duration = 300.0
    timeout: Duration = 10.0  # one send, connection included
    # webhook: the HMAC key is one of secret, secret_file or secret_env (a
    # variable's name); never printed
    url: str | None = None
    secret: str | None = Field(default=None, repr=False)
    secret_file: Path | None = None
    secret_env: str | None = None
    # email: port defaults to 465 with tls, 587 with starttls, else 25
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    sender: str | None = Field(default=None, alias="from")
    to: list[str] = Field(default_factory=list)
    starttls: bool = False
    tls: bool = False  # TLS from the first byte (SMTPS)
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None
    ca_file: Path | None = None  # CAs for the server's certificate (default: the system's)
    # syslog: format defaults to rfc3164 on a Unix socket (as syslog(3)), else rfc5424
    address: str | None = None
    facility: SyslogFacility = "daemon"
    format: Literal["rfc5424", "rfc3164"] | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError("an http:// or https:// URL, e.g. https://hooks.example.com/sipwarden")
        return value

    @field_validator("secret", "password")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a blank secret: give one, or leave the key out")
        return value

    @field_validator("secret")
    @classmethod
    def _hmac_key(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_TOKEN:
            raise ValueError(f"an HMAC key of {len(value)} characters is guessable: {_TOKEN_USAGE}")
        return value

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("the name of an environment variable, e.g. SIPWARDEN_WEBHOOK_SECRET")
        return value

    @field_validator("host")
    @classmethod
    def _mail_host(cls, value: str | None) -> str | None:
        if value is not None and not _is_host(value):
            raise ValueError("a host name or an IP address, e.g. smtp.example.com")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and not _MAILBOX.fullmatch(value):
            raise ValueError("a mail address, e.g. sipwarden@example.com")
        return value

    @field_validator("to")
    @classmethod
    def _mailboxes(cls, value: list[str]) -> list[str]:
        for i, address in enumerate(value):
            if not _MAILBOX.fullmatch(address):
                raise ValueError(
                    f"entry [{i}], {address!r}, is not a mail address (ops@example.com)"
                )
        return value

    @field_validator("address")
    @classmethod
    def _syslog(cls, value: str | None) -> str | None:
        if value is not None:
            syslog_address(value)
        return value

    @model_validator(mode="after")
    def _fits_its_type(self) -> AlertConfig:
        given = {"from" if f == "sender" else f for f in self.model_fields_set}
        foreign = [
            k for t, keys in ALERT_KEYS.items() if t != self.type for k in keys if k in given
        ]
        if foreign:
            raise ValueError(
                f"{foreign[0]} is not a key of a {self.type} target: it takes"
                f" {', '.join(ALERT_KEYS[self.type])}, name, kinds, quiet_kinds, min_interval and timeout"
            )
        if self.type == "webhook":
            self._webhook()
        elif self.type == "email":
            self._email()
        elif self.address is None:
            raise ValueError(
                "a syslog target needs address (udp:HOST:PORT, tcp:HOST:PORT or /dev/log)"
            )
        return self

    def _webhook(self) -> None:
        if self.url is None:
            raise ValueError("a webhook needs url (https://...)")
        secrets = [k for k in ("secret", "secret_file", "secret_env") if getattr(self, k)]
        if len(secrets) != 1:
            raise ValueError(
                "a webhook needs exactly one of secret, secret_file or secret_env (the key of"
                f" its HMAC-SHA256 signature){f'; got {secrets}' if secrets else ''}"
            )

    def _email(self) -> None:
        if self.host is None or self.sender is None or not self.to:
            raise ValueError("an email target needs host, from and to (a list of addresses)")
        if self.tls and self.starttls:
            raise ValueError("set tls (SMTPS, port 465) or starttls (port 587), not both")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        has_password = self.password is not None or self.password_file is not None
        if (self.user is None) != (not has_password):
            raise ValueError("a login needs both user and password (or password_file)")
        plain = not (self.tls or self.starttls)
        if self.user is not None and plain and not _is_loopback(self.host):
            raise ValueError(
                f"a login to {self.host} over plain SMTP sends the password in clear:"
                " set starttls = true or tls = true"
            )

    @property
    def smtp_port(self) -> int:
        return self.port or (465 if self.tls else 587 if self.starttls else 25)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _named_alerts(value: list[AlertConfig]) -> list[AlertConfig]:
    """Each target gets a name (default: its type and index, "webhook-0");
    names are unique (``status`` reports per name)."""
    named = [
        a if a.name else a.model_copy(update={"name": f"{a.type}-{i}"}) for i, a in enumerate(value)
    ]
    seen: set[str | None] = set()
    for i, alert in enumerate(named):
        if alert.name in seen:
            raise ValueError(
                f"entry [{i}]: a second target named {alert.name!r} (names are unique)"
            )
        seen.add(alert.name)
    return named


Alerts = Annotated[list[AlertConfig], AfterValidator(_named_alerts)]


# ------------------------------------------------- analysis and schedule (issue 15)


def _ban_time(value: Any) -> float | str:
    if isinstance(value, str) and value.strip().lower() == "progressive":
        return "progressive"
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f'{exc}, or "progressive" (the [bans] steps)') from None
    assert seconds is not None
    return seconds


# an analysis ban: a duration, or "progressive" (the [bans] steps)
AnalysisBanTime = Annotated[float | Literal["progressive"], BeforeValidator(_ban_time)]


class DistributedConfig(_Section):
    """``[analysis.distributed]``: many addresses of one network failing
    logins or enumerating together, each below the per-source thresholds."""

    enabled: bool = True
    prefix_v4: int = Field(default=24, ge=8, le=32)  # the network: never wider than bans.widest_v4
    prefix_v6: int = Field(default=48, ge=16, le=128)
    min_sources: int = Field(default=5, ge=2)  # distinct failing addresses in it
    min_failures: int = Field(default=20, ge=1)  # their failures together
    ban: bool = True  # ask the ban book to ban the network
    bantime: AnalysisBanTime = 3600.0
    spare_logged_in: bool = True  # an address of it logged in: report, do not ban


class RegisterNoSuccessConfig(_Section):
    """``[analysis.register_no_success]``: REGISTER-heavy sources never answered 2xx."""

    enabled: bool = True
    min_registers: int = Field(default=100, ge=1)  # within the window
    share: float = Field(default=0.8, gt=0, le=1)  # REGISTER's share of its messages
    ban: bool = False  # a phone with a stale password looks alike, slower
    bantime: AnalysisBanTime = 3600.0


class RiseConfig(_Section):
    """``[analysis.rise]``: failed logins above the usual level for the hour
    of the week; sources from countries never seen before. Alerts only."""

    enabled: bool = True
    factor: float = Field(default=3.0, ge=1)  # times the usual level
    min_count: int = Field(default=20, ge=1)  # failed logins an hour, at least
    new_countries: int = Field(default=3, ge=0)  # new countries to report (0: off)


class CampaignConfig(_Section):
    """``[analysis.campaign]``: many sources sharing a tool fingerprint or a User-Agent."""

    enabled: bool = True
    min_sources: int = Field(default=10, ge=2)
    fingerprints: list[str] = Field(default_factory=lambda: ["scan.", "ua."])  # rule id prefixes
    user_agents: bool = True
    # verdict reasons (prefixes) that say nothing of the sender's tool
    ignore: list[str] = Field(default_factory=lambda: ["banned", "options.", "sanity."])
    ban: bool = False  # ban each source of a campaign too
    bantime: AnalysisBanTime = "progressive"
    max_decisions: int = Field(default=1000, ge=1)  # per run


class AnalysisConfig(_Section):
    """``[analysis]``: the periodic analysis of recent events and flows."""

    enabled: bool = True
    interval: Duration = 60.0  # how often it runs
    window: Duration = 900.0  # how far back it reads
    quiet_raise: bool = True  # in quiet time, findings one severity step up
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    register_no_success: RegisterNoSuccessConfig = Field(default_factory=RegisterNoSuccessConfig)
    rise: RiseConfig = Field(default_factory=RiseConfig)
    campaign: CampaignConfig = Field(default_factory=CampaignConfig)


WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")
_HOURS_USAGE = 'use "HH:MM-HH:MM", e.g. "08:00-18:00" or "22:00-06:00" (across midnight)'


def parse_hours(text: str) -> tuple[int, int]:
    """``"08:00-18:00"`` as minutes of the day (480, 1080); ``24:00`` ends a
    day. Raises ValueError saying what is valid."""
    m = _HOURS.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a span of hours: {_HOURS_USAGE}")
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if end > 1440 or start == end:
        raise ValueError(f"{text!r}: {_HOURS_USAGE}, the end differing from the start")
    return start, end


class HolidaysConfig(_Section):
    """``[schedule.holidays]``: public holidays (the ``holidays`` library) and own dates."""

    country: str | None = None  # ISO 3166-1 alpha-2, e.g. "DE"
    subdivision: str | None = None  # e.g. "BY" (Bavaria); needs country
    dates: list[datetime.date] = Field(default_factory=list)  # the site's own closing days

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and not _COUNTRY.fullmatch(value.upper()):
            raise ValueError(f"{value!r} is not a two-letter country code (ISO 3166-1), e.g. DE")
        return None if value is None else value.upper()

    @model_validator(mode="after")
    def _subdivision_of_a_country(self) -> HolidaysConfig:
        if self.subdivision is not None and self.country is None:
            raise ValueError(f"subdivision {self.subdivision!r} needs a country: set country too")
        return self


class QuietPolicyConfig(_Section):
    """``[schedule.quiet]``: the stricter policy in quiet time."""

    maxretry: int = Field(default=3, ge=1)  # failed logins within findtime: a ban
    findtime: Duration = 1800.0
    limits_factor: float = Field(default=0.5, gt=0, le=1)  # the [limits] times this
    requests: int | None = Field(default=None, ge=1)  # or own values (per window)
    methods: dict[str, int] = Field(default_factory=dict)  # e.g. {INVITE = 5}
    # INVITEs to international numbers ([dialplan]) from sources neither
    # trusted nor known-good: "drop", "alert" (let through, told) or "allow"
    international: Literal["allow", "drop", "alert"] = "allow"

    _methods = field_validator("methods")(classmethod(lambda cls, v: _method_limits(v)))


class ScheduleConfig(_Section):
    """``[schedule]``: when nobody watches (quiet time: outside business
    hours, in quiet hours, at weekends, on holidays), in ``timezone``. No
    rule set: never quiet."""

    timezone: str = "UTC"  # an IANA name, e.g. "Europe/Berlin" (checked at start)
    business_hours: str | None = None  # "08:00-18:00": outside them is quiet
    quiet_hours: str | None = None  # "22:00-06:00": quiet (may cross midnight)
    weekend: list[str] = Field(default_factory=list)  # e.g. ["sat", "sun"]: quiet all day
    holidays: HolidaysConfig = Field(default_factory=HolidaysConfig)
    quiet: QuietPolicyConfig = Field(default_factory=QuietPolicyConfig)

    @field_validator("business_hours", "quiet_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hours(value)
        return value

    @field_validator("weekend")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        days = []
        for i, day in enumerate(value):
            name = day.strip().lower()[:3] if isinstance(day, str) else ""
            if name not in WEEKDAY_NAMES:
                raise ValueError(
                    f"entry [{i}], {day!r}, is not a day: use {', '.join(WEEKDAY_NAMES)}"
                )
            days.append(name)
        return days

    @property
    def configured(self) -> bool:
        """Whether any rule is set (else never quiet)."""
        h = self.holidays
        return bool(self.business_hours or self.quiet_hours or self.weekend or h.country or h.dates)


class HoneypotConfig(_Section):
    """The honeypot's calls (``deception/honeypot.py``): how the fake PBX
    answers a hostile INVITE, and how long its call records are kept."""

    ringing: Literal[180, 183] = 180  # the ringing answer, after 100 Trying
    ring_after: float = Field(default=0.0, ge=0, le=30)  # seconds from 100 to it
    hold: Duration = Field(default=15.0, le=300)  # ringing this long, then the final answer
    final: Literal["486", "603", "200"] = "486"  # busy, declined, or answered with no media
    answer_sdp: bool = True  # the 200 carries an SDP refusing its stream (port 0); off: no body
    bye_after: Duration = Field(default=10.0, le=3600)  # after the 200, our BYE
    server: str = Field(default="", max_length=100)  # the Server header ("": none)
    retransmits: int = Field(default=2, ge=0, le=6)  # of a final answer or our BYE, without ACK
    max_calls: int = Field(default=4096, ge=1)  # in progress; the oldest forgotten past this
    grace: Duration = Field(default=32.0, le=300)  # a call is forgotten this long after its end
    max_records: int = Field(default=10_000, ge=1)  # (source, number) records between two writes
    retention: Duration = 90 * 86400.0  # records not called since are deleted
    max_rows: int = Field(default=1_000_000, ge=1000)  # the least recent go first past this


class DeceptionConfig(_Section):
    """[deception]: answers to sources already judged hostile, instead of
    silence (issue 16). Off by default: every answer tells a scanner that a
    SIP server lives here."""

    enabled: bool = False
    honeypot: bool = True  # hostile INVITEs reach the fake PBX (its settings: see below)
    register_ok: bool = True  # a hostile REGISTER gets 200 OK (a guess with credentials: 401)
    crash_scanners: bool = False  # the answer that stops SIPVicious
    rate: float = Field(default=50.0, gt=0, le=100_000)  # answers a second to one source
    burst: int = Field(default=100, ge=1, le=1_000_000)  # ... in a burst
    total_rate: float = Field(default=1000.0, gt=0, le=10_000_000)  # to all sources together
    crash_interval: Duration = Field(default=5.0, ge=1, le=3600)  # one stopper per source per this
    engaged_for: Duration = Field(default=600.0, ge=10, le=99_999_999)  # after its last packet
    max_sources: int = Field(default=65_536, ge=1, le=16_777_216)  # sources remembered
    server_header: str = ""  # a generic Server on the fake answers; "" none (never sipwarden's)
    # the fake PBX's settings, [deception.fake_pbx] (`honeypot` above is its switch)
    fake_pbx: HoneypotConfig = Field(default_factory=HoneypotConfig)

    @field_validator("server_header")
    @classmethod
    def _header_value(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\0") or value != value.strip():
            raise ValueError("one line of text without leading or trailing spaces (a header value)")
        return value


# ------------------------------------------------- dialplan and toll fraud (issue 16)


def _prefixes(value: list[str], plus: bool) -> list[str]:
    valid = 'digits, e.g. "00" or "011", or "+"' if plus else 'digits, e.g. "9"'
    for i, prefix in enumerate(value):
        ok = isinstance(prefix, str) and (
            (prefix.isascii() and prefix.isdigit() and len(prefix) <= 6) or (plus and prefix == "+")
        )
        if not ok:
            raise ValueError(f"entry [{i}], {prefix!r}, is not a prefix: use {valid} (6 at most)")
    return value


class DialplanConfig(_Section):
    """``[dialplan]``: how numbers are dialled here, for the toll-fraud
    detectors, the quiet-time rule and the honeypot's records
    (``intel.numbers.Dialplan`` takes these keys as they are)."""

    # the home country (ISO 3166-1 alpha-2); None: international is anything
    # dialled with an international prefix or "+"
    country: str | None = None
    international_prefixes: list[str] = Field(default_factory=lambda: ["00", "011"])
    trunk_prefixes: list[str] = Field(default_factory=list)  # "an outside line", e.g. ["9"]

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        import phonenumbers  # pure, but only this check needs it here

        if value is None:
            return None
        code = value.upper() if isinstance(value, str) else ""
        if not _COUNTRY.fullmatch(code) or code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"{value!r} is not a country with a numbering plan: use a two-letter"
                " ISO 3166-1 code, e.g. GB, US or DE"
            )
        return code

    _international = field_validator("international_prefixes")(
        classmethod(lambda cls, v: _prefixes(v, plus=True))
    )
    _trunk = field_validator("trunk_prefixes")(classmethod(lambda cls, v: _prefixes(v, plus=False)))


class TollFraudConfig(_Section):
    """``[tollfraud]``: the toll-fraud detectors on INVITEs (``policy/tollfraud.py``)."""

    enabled: bool = True
    window: Duration = 3600.0
    walk_prefixes: int = Field(default=2, ge=2, le=10)  # one number behind this many: a walk
    walk_known_good: bool = False  # look for walks from sources that logged in too
    international: int = Field(default=10, ge=1)  # INVITEs abroad, never logged in, per window
    bantime: AnalysisBanTime = "progressive"
    max_sources: int = Field(default=100_000, ge=1)


LogFormat = Literal["asterisk", "asterisk-security", "freeswitch", "kamailio", "custom"]


class LogSourceConfig(_Section):
    """One ``[[logwatch.sources]]``: a log file (``path``) or the systemd
    journal of a unit (``journal``), read by a format's patterns
    (``logwatch/formats/``; ``custom``: the operator's own file)."""

    path: Path | None = None  # followed across rotation; the position survives restarts
    journal: str | None = Field(default=None, pattern=r"^[A-Za-z0-9@._:-]{1,200}$")  # a unit
    # the journal files to read instead of the system's journal (a container's, tests)
    journal_files: list[Path] = Field(default_factory=list)
    format: LogFormat = "asterisk"
    patterns: Path | None = None  # format = "custom": the pattern file
    timezone: str | None = None  # of times written without an offset (default: the machine's)

    @model_validator(mode="after")
    def _one_source(self) -> LogSourceConfig:
        if (self.path is None) == (self.journal is None):
            raise ValueError(
                "give either path (a log file) or journal (a unit, e.g. asterisk.service)"
            )
        if self.journal_files and self.journal is None:
            raise ValueError("journal_files are for a journal source: add journal = a unit")
        if (self.format == "custom") != (self.patterns is not None):
            raise ValueError(
                "format = 'custom' takes patterns = a pattern file; the shipped formats take none"
            )
        return self

    @property
    def name(self) -> str:
        """How ``status`` and the log name it: the path, or journal:<unit>."""
        return str(self.path) if self.path is not None else f"journal:{self.journal}"


class LogwatchConfig(_Section):
    """``[logwatch]``: logwatch mode, following the PBX's logs (no sources: off)."""

    sources: list[LogSourceConfig] = Field(default_factory=list)
    poll: Duration = Field(default=0.25, le=10)  # how often files are looked at
    max_age: Duration = 600.0  # lines older than this (their own time) are counted, not reported
    silent_after: Duration = 300.0  # a source that reads no line this long: a warning

    @model_validator(mode="after")
    def _distinct(self) -> LogwatchConfig:
        names = [source.name for source in self.sources]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"sources: {name!r} is given twice: follow each log once")
        return self


_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class ReportConfig(_Section):
    """``[report]``: the report mailed weekly (`sipwarden report`'s HTML,
    its JSON attached) through the ``[[alerts]]`` email target named
    ``target``, on ``weekday`` at ``time`` in ``[schedule] timezone``."""

    enabled: bool = False
    weekday: str = "mon"  # mon .. sun
    time: str = "08:00"  # HH:MM, the wall clock of [schedule] timezone
    since: Duration = 7 * 86400.0  # the window: the last week
    target: str | None = None  # the name of an [[alerts]] target of type "email"
    top: int = Field(default=20, ge=1, le=1000)  # rows per list

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        if value not in WEEKDAY_NAMES:
            raise ValueError(f"{value!r} is not a day: use {', '.join(WEEKDAY_NAMES)}")
        return value

    @field_validator("time")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError(f'{value!r} is not a time of day: use "HH:MM", e.g. "08:00"')
        return value

    @property
    def minute(self) -> int:
        """``time`` as the minute of the day."""
        hours, minutes = self.time.split(":")
        return int(hours) * 60 + int(minutes)


FLEET_PASSWORD_ENV = "SIPWARDEN_FLEET_PASSWORD"
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class FleetConfig(_Section):
    """``[fleet]``: several sipwarden nodes sharing bans, failure counts and
    intel through Redis (``fleet/``). ``redis`` empty: a single node.

    Each node authenticates (an ACL ``username`` and ``password``, in the URL
    or here; the password also from ``password_file`` or
    ``SIPWARDEN_FLEET_PASSWORD``), over TLS
    with a ``rediss://`` URL (``tls_ca_file`` verifies the server;
    ``tls_cert_file`` and ``tls_key_file`` when Redis asks for a client
    certificate). ``node`` names this node in every ban it publishes
    (default: the host name). ``prefix`` begins every key, so fleets can
    share one Redis. ``publish_limit`` bans a minute is what this node
    publishes at most, and what it applies at most from each other node: a
    broken or compromised node cannot ban the world. ``queue`` changes are
    held while Redis is unreachable, then published in order."""

    redis: str = ""  # redis://[user:password@]host:port/db or rediss:// (TLS); "": no fleet
    node: str = ""  # this node's name ("" : the host name)
    username: str | None = None  # the ACL user (or in the URL)
    password: str | None = None  # or in the URL, password_file, or SIPWARDEN_FLEET_PASSWORD
    password_file: Path | None = None  # the password alone in a file (0600), beside the config
    tls_ca_file: Path | None = None  # verifies the Redis server (rediss://)
    tls_cert_file: Path | None = None  # this node's client certificate, if Redis asks
    tls_key_file: Path | None = None
    prefix: str = "sipwarden"  # every key begins with it
    publish_limit: int = Field(default=60, ge=1, le=100_000)  # bans a minute, each way
    queue: int = Field(default=10_000, ge=1, le=1_000_000)  # changes held while Redis is down
    timeout: float = Field(default=2.0, gt=0, le=60)  # seconds for one Redis call
    share_failures: bool = True  # failed logins and enumeration counted fleet-wide
    share_intel: bool = True  # one node fetches the feeds, the others take them from Redis

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"{value!r} is not a Redis URL: use redis://host:port/db, rediss://host:port/db"
                " (TLS) or unix:///path/to/redis.sock"
            )
        return value

    @field_validator("node")
    @classmethod
    def _node_name(cls, value: str) -> str:
        if value and not _NODE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a node name: letters, digits, '.', '_' and '-', at most 63"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        if not _NODE.fullmatch(value):
            raise ValueError(f"{value!r}: a key prefix is letters, digits, '.', '_' and '-'")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.redis)


class Config(_Section):
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    host: HostConfig = Field(default_factory=HostConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    bans: BansConfig = Field(default_factory=BansConfig)
    failures: FailuresConfig = Field(default_factory=FailuresConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    firewall: FirewallConfig = Field(default_factory=FirewallConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    intel: IntelConfig = Field(default_factory=IntelConfig)
    observe: ObserveConfig = Field(default_factory=ObserveConfig)
    fingerprints: FingerprintsConfig = Field(default_factory=FingerprintsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    alerts: Alerts = Field(default_factory=list)  # [[alerts]] targets
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    deception: DeceptionConfig = Field(default_factory=DeceptionConfig)
    dialplan: DialplanConfig = Field(default_factory=DialplanConfig)
    tollfraud: TollFraudConfig = Field(default_factory=TollFraudConfig)
    logwatch: LogwatchConfig = Field(default_factory=LogwatchConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)  # the weekly report by mail
    fleet: FleetConfig = Field(default_factory=FleetConfig)  # nodes sharing state through Redis

    @model_validator(mode="after")
    def _report_target(self) -> Config:
        report = self.report
        if report.enabled:
            mail = [t.name for t in self.alerts if t.type == "email" and t.name]
            if report.target not in mail:
                raise ValueError(
                    f"report.target = {report.target!r} is not the name of an [[alerts]] target"
                    f" of type email: use one of {', '.join(mail) or 'none yet (name one)'}"
                )
        return self

    @model_validator(mode="after")
    def _analysis_bans_no_wider(self) -> Config:
        dist, bans = self.analysis.distributed, self.bans
        for v, prefix, widest in (
            (4, dist.prefix_v4, bans.widest_v4),
            (6, dist.prefix_v6, bans.widest_v6),
        ):
            if dist.enabled and dist.ban and prefix < widest:
                raise ValueError(
                    f"analysis.distributed.prefix_v{v} = {prefix} is wider than"
                    f" bans.widest_v{v} = {widest}: use {widest} to {32 if v == 4 else 128}"
                )
        for method in self.schedule.quiet.methods:
            if method not in self.limits.methods:
                raise ValueError(
                    f"schedule.quiet.methods: {method} is not limited by day: add it to"
                    f" limits.methods ({', '.join(self.limits.methods) or 'none now'})"
                )
        return self


def mode_problem(config: Config) -> str | None:
    """Why ``config`` gives `sipwarden run` nothing to do (no edge, host mode
    off, no logwatch source), or None. `run` refuses it (``daemon/preflight.py``);
    the offline commands (`bans`, `events`...) take any config."""
    # logwatch's [[logwatch.sources]] is read by name, so that this holds
    # once that section exists
    sources = getattr(getattr(config, "logwatch", None), "sources", None)
    if config.edge.listen or config.host.enabled or sources:
        return None
    return (
        "no mode configured (no [edge], or edge.listen = []): give [edge] listen,"
        " set [host] enabled = true, or add [[logwatch.sources]]"
    )


# keys whose values an error names by their length, not their text
SECRET_KEYS = frozenset({"api.token", "intel.apiban.key"})
SECRET_NAMES = frozenset({"secret", "password"})  # in any section ([[alerts]])


def _format(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in item["loc"]).replace(
            ".[", "["
        )
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see README.md for the keys)"
        value = item.get("input")
        # a table, or a list of tables ([[alerts]], [[intel.feeds]]), is not
        # shown: it is long and may hold a secret
        tables = isinstance(value, dict) or (
            isinstance(value, list) and any(isinstance(v, dict) for v in value)
        )
        shown = (
            "" if item["type"] in ("missing", "extra_forbidden") or tables else f" (got {value!r})"
        )
        secret = key in SECRET_KEYS or key.rpartition(".")[2] in SECRET_NAMES
        if secret and isinstance(value, str) and value.strip():
            shown = f" (got {len(value)} characters, not shown)"  # a secret, maybe reused
        lines.append(f"{key or 'config'}: {msg}{shown}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset"
            f" {exc.start}): save the file as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "edge" not in data:  # a file without [edge] has no edge (the defaults' is the demo's)
        data = {**data, "edge": {"listen": []}}
    try:
        config = config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}:\n{exc}") from None
    # files a config names are found next to it (whatever the working
    # directory of the daemon, or of `sipwarden bans list -c`)
    here = path.resolve().parent
    files = [str(here / f) for f in config.policy.rule_files]
    return config.model_copy(
        update={
            "policy": config.policy.model_copy(update={"rule_files": files}),
            "edge": _edge_paths(config.edge, here),
            "control": config.control.model_copy(update={"socket": here / config.control.socket}),
            "storage": config.storage.model_copy(update={"path": here / config.storage.path}),
            "api": config.api.model_copy(
                update={"token_file": config.api.token_file and here / config.api.token_file}
            ),
            "intel": _intel_paths(config.intel, here),
            "alerts": [_alert_paths(a, here) for a in config.alerts],
            "fleet": config.fleet.model_copy(
                update={
                    name: getattr(config.fleet, name) and here / getattr(config.fleet, name)
                    for name in ("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
                }
            ),
        }
    )


def _edge_paths(edge: EdgeConfig, here: Path) -> EdgeConfig:
    def near(path: Path | None) -> Path | None:
        return None if path is None else here / path

    return edge.model_copy(
        update={
            "flow_key_file": here / edge.flow_key_file,
            "tls_certificate": near(edge.tls_certificate),
            "tls_key": near(edge.tls_key),
            "backend_ca_file": near(edge.backend_ca_file),
        }
    )


def _intel_paths(intel: IntelConfig, here: Path) -> IntelConfig:
    geo = intel.geoip
    return intel.model_copy(
        update={
            "geoip": geo.model_copy(
                update={
                    "database": None if geo.database is None else here / geo.database,
                    "zones": None if geo.zones is None else here / geo.zones,
                }
            ),
            "feeds": [
                f.model_copy(update={"path": None if f.path is None else here / f.path})
                for f in intel.feeds
            ],
        }
    )


def _alert_paths(alert: AlertConfig, here: Path) -> AlertConfig:
    paths = ("secret_file", "password_file", "ca_file")
    return alert.model_copy(
        update={k: here / getattr(alert, k) for k in paths if getattr(alert, k) is not None}
    )
