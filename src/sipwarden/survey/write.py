"""From what the survey found to what `init` writes: the plan (mode, the
PBX, the public address, the PBX's new port), the commented TOML config for
edge, host or logwatch mode, and the PBX's change as a unified diff.

The config is text, not a serialised model, so that every key carries the
comment that says why it is there; the caller checks that it loads. Host
mode's ``[host]`` section is written as DESIGN.md's contract gives it. A
config without ``[edge]`` means no edge once host mode's "an absent [edge]
means no edge" is in (host and logwatch configs write none). The diff names
the machine's paths (``a/etc/...``, ``b/etc/...``): ``patch -p1 -d /``
applies it.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import asterisk, freeswitch, kamailio
from .found import FileChange, Machine, Pbx

Mode = Literal["edge", "host", "logwatch"]
MODES: tuple[Mode, ...] = ("edge", "host", "logwatch")
PORT_CHOICES = (5080, 5090, 5070, 5062, 15060)
DEFAULT_LOGS = {
    "asterisk": ("asterisk", "/var/log/asterisk/messages"),
    "freepbx": ("asterisk", "/var/log/asterisk/full"),
    "freeswitch": ("freeswitch", "/var/log/freeswitch/freeswitch.log"),
    "kamailio": ("kamailio", "/var/log/kamailio.log"),
}
NAMES = {
    "asterisk": "Asterisk",
    "freepbx": "FreePBX",
    "freeswitch": "FreeSWITCH",
    "kamailio": "Kamailio",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """What `init` will write: ``listen_host`` is where the edge binds (the
    PBX's own address when it named one, else every address), ``public``
    what clients are told when that is a wildcard, ``pbx_port`` the PBX's
    new port on 127.0.0.1; ``state_dir`` holds the store, key and socket
    (None: next to the config)."""

    mode: Mode
    pbx: Pbx | None
    public: str | None = None
    listen_host: str = "0.0.0.0"
    pbx_port: int = 5080
    state_dir: str | None = None


def suggest_mode(pbx: Pbx | None) -> Mode:
    """The edge when a PBX listens on 5060; logwatch when only its logs are known."""
    if pbx is not None and pbx.sip_listeners():
        return "edge"
    return "logwatch"


def free_port(machine: Machine, pbx: Pbx | None) -> int:
    """The first of PORT_CHOICES neither the PBX's config nor a socket uses
    (FreeSWITCH's external profile sits on 5080)."""
    used = {s.port for s in machine.sockets}
    if pbx is not None:
        used |= {ls.port for ls in pbx.listeners}
    return next(p for p in PORT_CHOICES if p not in used)


def public_address(machine: Machine, pbx: Pbx | None) -> str | None:
    """The address the PBX advertises (external_*, externip, ext-sip-ip),
    else one it binds to 5060, else a socket's on 5060 that is not loopback."""
    if pbx is not None and pbx.external:
        return pbx.external
    hosts = [ls.host for ls in pbx.sip_listeners()] if pbx is not None else []
    hosts += [s.host for s in machine.on_sip_ports() if s.port == 5060]
    for host in hosts:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not ip.is_loopback and not ip.is_unspecified:
            return host
    return None


def listen_host(pbx: Pbx | None) -> str:
    """The PBX's own specific address on 5060 (the edge takes its place),
    else every address."""
    for ls in pbx.sip_listeners() if pbx is not None else ():
        if not ls.wildcard and not ls.host.startswith("127."):
            return ls.host
    return "0.0.0.0"


def _list(values: list[str] | tuple[str, ...]) -> str:
    return json.dumps(list(values))


def _str(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value)


def _endpoint(transport: str, host: str, port: int) -> str:
    return f"{transport}:[{host}]:{port}" if ":" in host else f"{transport}:{host}:{port}"


def config_text(plan: Plan, when: str) -> str:
    pbx = plan.pbx
    name = NAMES[pbx.kind] if pbx is not None else "your PBX"
    where = ", ".join(pbx.files[:3]) if pbx is not None else "no PBX configuration found"
    head = [
        f"# sipwarden: written by `sipwarden init` on {when}.",
        f"# PBX: {name} ({where}).",
    ]
    if plan.mode == "edge":
        body = _edge(plan, name)
    elif plan.mode == "host":
        body = _host(plan, name)
    else:
        body = _logwatch(plan, name)
    return "\n".join([*head, *body, *_common(plan)]) + "\n"


def _edge(plan: Plan, name: str) -> list[str]:
    pbx = plan.pbx
    found = {ls.transport for ls in pbx.sip_listeners()} if pbx is not None else set()
    transports = [t for t in ("udp", "tcp") if t in found] or ["udp", "tcp"]
    listen = [_endpoint(t, plan.listen_host, 5060) for t in transports]
    domains = list(pbx.domains) if pbx is not None else []
    out = [
        "# Mode: edge. sipwarden takes the public SIP port and proxies to the PBX,",
        f"# which moves to 127.0.0.1:{plan.pbx_port}: apply the change `init` printed",
        "# (a diff of the PBX's files; `init` never edits them), restart the PBX,",
        "# then `sipwarden run -c` this file. Media (RTP) does not pass through sipwarden.",
        "",
        "[edge]",
        f"listen = {_list(listen)}   # the public SIP port, now ours",
        f'backend = "udp:127.0.0.1:{plan.pbx_port}"   # the PBX, moved to loopback',
        f"domains = {_list(domains)}   # hosts we answer for ([]: any); add your SIP domain",
    ]
    if plan.listen_host in ("0.0.0.0", "::") and plan.public:
        out.append(f"advertise = {_str(plan.public)}   # what phones are told (Record-Route, Path)")
    out.append(
        f"flow_key_file = {_str(_state(plan, 'sipwarden.key'))}   # keep it: phones stay reachable"
    )
    return out


def _host(plan: Plan, name: str) -> list[str]:
    pbx = plan.pbx
    listeners = pbx.listeners if pbx is not None else ()
    public = [ls for ls in listeners if not ls.host.startswith("127.")]
    ports = sorted({ls.port for ls in public if ls.transport in ("udp", "tcp")}) or [5060]
    tls = sorted({ls.port for ls in public if ls.transport == "tls"} - set(ports))
    if not tls and 5061 not in ports:
        tls = [5061]
    return [
        f"# Mode: host. {name} keeps its port; nftables hands its SIP packets to",
        "# sipwarden (NFQUEUE) for a verdict. No change to the PBX. There is no [edge]:",
        "# sipwarden does not listen on the SIP port itself.",
        "",
        "[host]",
        "enabled = true",
        f"ports = {json.dumps(ports)}   # the PBX's SIP ports, UDP and TCP",
        f"tls_ports = {json.dumps(tls)}   # TLS: judged by source only",
        'fail = "open"   # while sipwarden is not running: "open" (calls go on) or "closed"',
    ]


def _logwatch(plan: Plan, name: str) -> list[str]:
    pbx = plan.pbx
    out = [
        f"# Mode: logwatch. sipwarden follows {name}'s log and bans the sources of the",
        "# failed logins it reports (after the PBX has answered: put an edge in front",
        "# where you can). No change to the PBX. There is no [edge].",
    ]
    logs = list(pbx.logs) if pbx is not None else []
    if not logs:
        fmt, path = DEFAULT_LOGS[pbx.kind] if pbx is not None else DEFAULT_LOGS["asterisk"]
        out += [
            "",
            "# NOT FOUND on this machine: check the path, then `sipwarden logwatch test`",
            "[[logwatch.sources]]",
            f"path = {_str(path)}",
            f"format = {_str(fmt)}",
        ]
        return out
    for log in logs:
        out += ["", "[[logwatch.sources]]"]
        if log.path is not None:
            out.append(f"path = {_str(log.path)}   # followed across rotation")
        else:
            out.append(f"journal = {_str(str(log.journal))}   # the unit's journal")
        out.append(f"format = {_str(log.format)}")
        if log.format == "kamailio":
            out.append(
                "# Kamailio logs a failed login only where its script says: see docs/kamailio.md"
            )
    return out


def _state(plan: Plan, name: str) -> str:
    return name if plan.state_dir is None else str(Path(plan.state_dir) / name)


def _common(plan: Plan) -> list[str]:
    pbx = plan.pbx
    trunks = list(pbx.trunks) if pbx is not None else []
    out = [
        "",
        "[policy]",
        f"trusted_peers = {_list(trunks)}   # trunks and offices: never scanned, limited or banned",
        '# mode = "monitor"   # the first weeks: judge, count and record everything, drop nothing',
        "",
        "[firewall]",
        'enforcer = "nftables"   # bans die in the kernel (table inet sipwarden)',
        "",
        "[storage]",
        f"path = {_str(_state(plan, 'sipwarden.db'))}",
        "",
        "[control]",
        f"socket = {_str(_state(plan, 'sipwarden.sock'))}",
    ]
    if pbx is not None and pbx.rtp_ports is not None:
        low, high = pbx.rtp_ports
        out += [
            "",
            f"# RTP: media goes straight between the phones and the PBX: keep UDP {low}-{high}",
            "# open to them in your firewall (docs/rtp-and-nat.md).",
        ]
    return out


def edge_change(root: Path, plan: Plan) -> list[FileChange]:
    """The PBX's files as they should be for ``plan`` (edge mode)."""
    pbx = plan.pbx
    if pbx is None or plan.mode != "edge":
        return []
    public = plan.public
    if pbx.kind in ("asterisk", "freepbx"):
        return asterisk.edge_change(root, pbx, public, plan.pbx_port)
    if pbx.kind == "freeswitch":
        return freeswitch.edge_change(root, pbx, public, plan.pbx_port)
    return kamailio.edge_change(root, pbx, public, plan.pbx_port)


def unified_diff(changes: list[FileChange]) -> str:
    """The changes as one unified diff, ``patch -p1 -d /`` style."""
    out: list[str] = []
    for change in changes:
        rel = change.path.lstrip("/")
        out += difflib.unified_diff(
            change.old.splitlines(keepends=True),
            change.new.splitlines(keepends=True),
            f"a/{rel}",
            f"b/{rel}",
        )
    return "".join(out)
