"""Asterisk and FreePBX: where they take SIP, and the change that moves
them behind an edge on the same machine.

Read under a root (``/`` on the machine, a sample tree in the tests):
``/etc/asterisk/pjsip.conf`` (PJSIP's ``type=transport`` sections: ``bind``,
``protocol``, ``external_signaling_address``, ``external_media_address``,
``local_net``; FreePBX's generated ``pjsip.transports.conf`` comes in through
``#include``), ``sip.conf`` (chan_sip's ``[general]``: ``udpbindaddr``,
``bindport``, ``tcpbindaddr``, ``externip``/``externaddr``, ``localnet``;
FreePBX's ``sip_general_additional.conf``), ``modules.conf`` (a driver not
loaded is left out), ``rtp.conf`` (the RTP ports) and the logs under
``/var/log/asterisk``. FreePBX is Asterisk plus its markers
(``/etc/freepbx.conf``, ``/etc/amportal.conf``).

The edge change (``edge_change``): the plain SIP transports on 5060 bind
127.0.0.1 and the new port; ``external_*``/``externip`` go (the PBX talks
only to the edge now, over loopback, so they would only misdirect); loopback
is a local network; the SDP's media address is set to the public one
(Asterisk would otherwise offer the address it reaches the edge by); and
the registrar keeps the edge's Path (``support_path``/``supportpath``), so
calls to a phone go back through the edge. The files themselves are never
written: the caller prints the diff.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import cast

from .found import FileChange, Listener, LogSource, Pbx, PbxKind, Transport
from .ini import Edits, Option, Section, Tree, read_tree
from .logs import first_existing, journal_unit

ETC = "/etc/asterisk"
FREEPBX_MARKERS = ("/etc/freepbx.conf", "/etc/amportal.conf")
FREEPBX_NOTE = (
    "FreePBX writes {file} itself: make this change in the GUI (Settings > Asterisk SIP"
    " Settings: the driver's bind address 127.0.0.1 and port {port}, no external address;"
    " Connectivity > Firewall off for SIP, the edge does that) and Apply Config; the diff"
    " shows what the file should say afterwards"
)


def _exists(root: Path, path: str) -> bool:
    return (root / path.lstrip("/")).exists()


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    """``0.0.0.0:5060``, ``[::]:5060``, ``192.0.2.1`` or ``[::]``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    return host or "0.0.0.0", int(port) if port.isdigit() else default_port


def _loaded(root: Path, module: str) -> bool:
    """False when modules.conf says ``noload => module``."""
    for ini in read_tree(root, f"{ETC}/modules.conf"):
        for section in ini.sections:
            for opt in section.all("noload"):
                if opt.value.strip() == module:
                    return False
    return True


def _is_loopback_net(text: str) -> bool:
    try:
        net = ipaddress.ip_network(text.replace("/255.0.0.0", "/8").strip(), strict=False)
    except ValueError:
        return False
    return ipaddress.ip_address("127.0.0.1") in net


def _network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _public(value: str | None) -> str | None:
    """An address, without a port; None for a name or nothing."""
    if not value:
        return None
    host, _ = _host_port(value, 0)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


# ------------------------------------------------------------------ PJSIP


def _pjsip(root: Path) -> tuple[Tree, list[Section]] | None:
    if not _loaded(root, "res_pjsip.so") or not _exists(root, f"{ETC}/pjsip.conf"):
        return None
    tree = Tree(read_tree(root, f"{ETC}/pjsip.conf"))
    return tree, tree.typed("transport")


def _transport(tree: Tree, section: Section) -> tuple[Transport, str, int, Option | None]:
    proto = tree.lookup(section, "protocol")
    transport = cast(Transport, (proto.value.lower() if proto else "udp"))
    bind = tree.lookup(section, "bind")
    default = 5061 if transport in ("tls", "wss") else 5060
    host, port = _host_port(bind.value, default) if bind else ("0.0.0.0", default)
    return transport, host, port, bind


def _pjsip_listeners(tree: Tree, transports: list[Section]) -> list[Listener]:
    out = []
    for t in transports:
        transport, host, port, _ = _transport(tree, t)
        if transport in ("udp", "tcp", "tls", "ws", "wss"):
            out.append(Listener(transport, host, port, f"{t.file.path} [{t.name}]"))
    return out


# --------------------------------------------------------------- chan_sip


def _chan_sip(root: Path) -> list[Section] | None:
    if not _loaded(root, "chan_sip.so") or not _exists(root, f"{ETC}/sip.conf"):
        return None
    tree = Tree(read_tree(root, f"{ETC}/sip.conf"))
    return [s for s in tree.sections if s.name == "general"]


def _general(general: list[Section], key: str) -> Option | None:
    found = [o for s in general for o in s.all(key)]
    return found[-1] if found else None


def _chan_sip_listeners(general: list[Section]) -> list[Listener]:
    if not general:
        return []
    where = f"{general[0].file.path} [general]"
    bindport = _general(general, "bindport")
    port = int(bindport.value) if bindport and bindport.value.isdigit() else 5060
    udp = _general(general, "udpbindaddr") or _general(general, "bindaddr")
    out = [Listener("udp", *_host_port(udp.value if udp else "0.0.0.0", port), where)]
    if (on := _general(general, "tcpenable")) and on.value.lower() in ("yes", "true", "1"):
        tcp = _general(general, "tcpbindaddr")
        out.append(Listener("tcp", *_host_port(tcp.value if tcp else "0.0.0.0", port), where))
    if (on := _general(general, "tlsenable")) and on.value.lower() in ("yes", "true", "1"):
        tls = _general(general, "tlsbindaddr")
        out.append(Listener("tls", *_host_port(tls.value if tls else "0.0.0.0", 5061), where))
    return out


# ----------------------------------------------------------------- survey


def find(root: Path) -> Pbx | None:
    """Asterisk (or FreePBX) under ``root``, or None."""
    if not _exists(root, ETC):
        return None
    kind: PbxKind = "freepbx" if any(_exists(root, m) for m in FREEPBX_MARKERS) else "asterisk"
    files: list[str] = []
    listeners: list[Listener] = []
    externals: list[str | None] = []
    nets: list[str] = []
    notes: list[str] = []
    trunks: list[str] = []
    if (pj := _pjsip(root)) is not None:
        tree, transports = pj
        files += [f.path for f in tree.files]
        listeners += _pjsip_listeners(tree, transports)
        for t in transports:
            for key in ("external_signaling_address", "external_media_address"):
                opt = tree.lookup(t, key)
                externals.append(_public(opt.value if opt else None))
            nets += [o.value for o in t.all("local_net")]
        trunks += [
            m.strip()
            for ident in tree.typed("identify")
            for opt in ident.all("match")
            for m in opt.value.split(",")
            if _network(m.strip())
        ]
        if trunks:
            notes.append(
                "PJSIP: identify by address (match=) sees only the edge behind it: give"
                " the trunk a transport of its own on another port (docs/trunks.md)"
            )
        aors = tree.typed("aor")
        if aors and not all(_yes(tree.lookup(a, "support_path")) for a in aors):
            notes.append("PJSIP: AORs without support_path=yes forget the edge's Path")
    if (general := _chan_sip(root)) is not None:
        files += sorted({s.file.path for s in general})
        listeners += _chan_sip_listeners(general)
        for key in ("externaddr", "externip"):
            opt = _general(general, key)
            externals.append(_public(opt.value if opt else None))
        nets += [o.value for s in general for o in s.all("localnet")]
    rtp = _rtp_ports(root)
    logs = _logs(root)
    for ls in listeners:
        if ls.transport in ("udp", "tcp") and ls.port != 5060 and not ls.host.startswith("127."):
            notes.append(
                f"{ls.where}: SIP on {ls.host}:{ls.port} stays public: limit it to your"
                " trunks' addresses in the firewall, or put it behind the edge too"
            )
        elif ls.transport not in ("udp", "tcp") and not ls.host.startswith("127."):
            notes.append(
                f"{ls.where}: {ls.transport} on {ls.host}:{ls.port} stays public behind an"
                " edge that takes only 5060: close it, or give the edge a tls: listener"
            )
    return Pbx(
        kind,
        tuple(files),
        tuple(listeners),
        external=next((e for e in externals if e), None),
        local_nets=tuple(nets),
        rtp_ports=rtp,
        trunks=tuple(dict.fromkeys(trunks)),
        logs=logs,
        notes=tuple(notes),
    )


def _yes(opt: Option | None) -> bool:
    return opt is not None and opt.value.lower() in ("yes", "true", "1", "on")


def _rtp_ports(root: Path) -> tuple[int, int]:
    start, end = 10000, 20000  # Asterisk's defaults
    for ini in read_tree(root, f"{ETC}/rtp.conf"):
        for s in ini.sections:
            if (o := s.get("rtpstart")) and o.value.isdigit():
                start = int(o.value)
            if (o := s.get("rtpend")) and o.value.isdigit():
                end = int(o.value)
    return start, end


def _logs(root: Path) -> tuple[LogSource, ...]:
    """The security log (structured, the most complete) when it is written;
    else messages, else full: following two would count a failure twice."""
    security = first_existing(root, "/var/log/asterisk/security", "/var/log/asterisk/security.log")
    if security:
        return (LogSource("asterisk-security", path=security),)
    plain = first_existing(
        root,
        "/var/log/asterisk/messages",
        "/var/log/asterisk/messages.log",
        "/var/log/asterisk/full",
        "/var/log/asterisk/full.log",
    )
    if plain:
        return (LogSource("asterisk", path=plain),)
    unit = journal_unit(root, "asterisk.service")
    return (LogSource("asterisk", journal=unit),) if unit else ()


# ------------------------------------------------------------ the change


def edge_change(root: Path, pbx: Pbx, public: str | None, port: int) -> list[FileChange]:
    """The files as they should be with the PBX on 127.0.0.1:``port``
    behind an edge that takes the public 5060 (only the files that change)."""
    edits = Edits()
    files = []
    if (pj := _pjsip(root)) is not None:
        tree, transports = pj
        _pjsip_edits(tree, transports, edits, public, port)
        files += tree.files
    if (general := _chan_sip(root)) is not None and general:
        _chan_sip_edits(general, edits, public, port)
        files += list({s.file.path: s.file for s in general}.values())
    changes = []
    for ini in files:
        if edits.touched(ini):
            note = ""
            if pbx.kind == "freepbx" and re.search(r"(_additional|\.transports)\.conf$", ini.path):
                note = FREEPBX_NOTE.format(file=ini.path, port=port)
            changes.append(
                FileChange(ini.path, "\n".join(ini.lines) + "\n", edits.apply(ini), note)
            )
    return changes


def _pjsip_edits(
    tree: Tree, transports: list[Section], edits: Edits, public: str | None, port: int
) -> None:
    moved = False
    for t in transports:
        transport, _, bind_port, bind = _transport(tree, t)
        if transport not in ("udp", "tcp") or bind_port != 5060:
            continue
        moved = True
        line = f"bind=127.0.0.1:{port}"
        if bind is not None:
            edits.replace(bind.section.file, bind.line, line)
        else:
            edits.add(t, line)
        for key in (
            "external_signaling_address",
            "external_signaling_port",
            "external_media_address",
        ):
            for section in (t, *tree.templates_of([t])):
                for opt in section.all(key):
                    edits.drop(section.file, opt.line)
        if not any(_is_loopback_net(o.value) for o in t.all("local_net")):
            edits.add(t, "local_net=127.0.0.0/8")
    if not moved:
        return
    given: set[str] = set()  # a template shared by many endpoints takes it once
    for endpoint in tree.typed("endpoint"):
        if public and tree.lookup(endpoint, "media_address") is None:
            target = next(iter(tree.templates_of([endpoint])), endpoint)
            if target.name not in given:
                given.add(target.name)
                edits.add(target, f"media_address={public}")
        rewrite = tree.lookup(endpoint, "rewrite_contact")
        if _yes(rewrite):
            assert rewrite is not None
            edits.replace(rewrite.section.file, rewrite.line, "rewrite_contact=no")
    for aor in tree.typed("aor"):
        support = tree.lookup(aor, "support_path")
        if support is None:
            edits.add(aor, "support_path=yes")
        elif not _yes(support):
            edits.replace(support.section.file, support.line, "support_path=yes")


def _chan_sip_edits(general: list[Section], edits: Edits, public: str | None, port: int) -> None:
    listeners = _chan_sip_listeners(general)
    if not any(ls.transport == "udp" and ls.port == 5060 for ls in listeners):
        return
    first = general[0]

    def put(key: str, value: str, *, only_if_present: bool = False) -> None:
        opt = _general(general, key)
        if opt is not None:
            edits.replace(opt.section.file, opt.line, f"{key}={value}")
        elif not only_if_present:
            edits.add(first, f"{key}={value}")

    put("udpbindaddr", f"127.0.0.1:{port}")
    put("bindaddr", "127.0.0.1", only_if_present=True)
    put("bindport", str(port), only_if_present=True)
    if any(ls.transport == "tcp" for ls in listeners):
        put("tcpbindaddr", f"127.0.0.1:{port}")
    for key in ("externip", "externaddr", "externhost", "externtcpport"):
        for s in general:
            for opt in s.all(key):
                edits.drop(s.file, opt.line)
    if not any(_is_loopback_net(o.value) for s in general for o in s.all("localnet")):
        edits.add(first, "localnet=127.0.0.0/255.0.0.0")
    if public:
        put("media_address", public)
    if not _yes(_general(general, "supportpath")):
        put("supportpath", "yes")
