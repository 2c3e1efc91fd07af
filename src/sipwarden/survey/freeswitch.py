"""FreeSWITCH: its sofia profiles' SIP addresses and ports, and the change
that moves the profile on 5060 to 127.0.0.1 behind an edge on the same
machine.

Read under the root, in ``/etc/freeswitch`` (Debian's packages) or
``/usr/local/freeswitch/conf`` (a source build): ``vars.xml``'s
``X-PRE-PROCESS set`` lines (``internal_sip_port``, ``external_sip_port``,
``external_sip_ip``...), each ``sip_profiles/*.xml`` profile's ``sip-ip``,
``sip-port``, ``ext-sip-ip``, ``tls``/``tls-sip-port`` with ``$${var}``
expanded from vars.xml (an unknown variable, such as ``local_ip_v4``, reads
as every address), ``autoload_configs/switch.conf.xml``'s RTP ports, and the
log under ``/var/log/freeswitch``. The profiles parse with
``xml.etree``; the change edits their lines so the diff stays small: the
port in vars.xml when the profile takes it from there, ``sip-ip`` 127.0.0.1,
``ext-sip-ip`` gone (the PBX talks only to the edge now). Sofia keeps a
registration's Path (``fs_path``), so calls to a phone go back through the edge.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .found import FileChange, Listener, LogSource, Pbx
from .logs import first_existing, journal_unit

DIRS = ("/etc/freeswitch", "/usr/local/freeswitch/conf")
_SET = re.compile(r'<X-PRE-PROCESS\s+cmd="set"\s+data="([A-Za-z0-9_]+)=([^"]*)"')
_VAR = re.compile(r"\$\$\{([A-Za-z0-9_]+)\}")


def _home(root: Path) -> str | None:
    return next((d for d in DIRS if (root / d.lstrip("/") / "vars.xml").is_file()), None)


def _read(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")


def _variables(text: str) -> dict[str, str]:
    return {m[1]: m[2] for m in _SET.finditer(text)}


def _profiles(root: Path, home: str) -> list[tuple[str, str, dict[str, str]]]:
    """(path, profile name, its settings' params as written) per profile file."""
    out = []
    folder = root / home.lstrip("/") / "sip_profiles"
    for file in sorted(folder.glob("*.xml")) if folder.is_dir() else []:
        path = f"{home}/sip_profiles/{file.name}"
        try:
            tree = ET.fromstring(_read(root, path))
        except ET.ParseError:
            continue
        for profile in tree.iter("profile"):
            params = {
                p.get("name", ""): p.get("value", "")
                for settings in profile.iter("settings")
                for p in settings.iter("param")
            }
            out.append((path, profile.get("name", file.stem), params))
    return out


def _expand(value: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m[1], ""), value)


def _address(value: str) -> str:
    """An IP as written, else every address (``$${local_ip_v4}``, ``auto``)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "0.0.0.0"
    return value


def find(root: Path) -> Pbx | None:
    home = _home(root)
    if home is None:
        return None
    variables = _variables(_read(root, f"{home}/vars.xml"))
    files = [f"{home}/vars.xml"]
    listeners: list[Listener] = []
    externals: list[str] = []
    notes: list[str] = []
    for path, name, params in _profiles(root, home):
        files.append(path)
        where = f"{path} (profile {name})"
        host = _address(_expand(params.get("sip-ip", ""), variables))
        port_text = _expand(params.get("sip-port", "5060"), variables)
        port = int(port_text) if port_text.isdigit() else 5060
        listeners += [Listener("udp", host, port, where), Listener("tcp", host, port, where)]
        if _expand(params.get("tls", "false"), variables) == "true":
            tls = _expand(params.get("tls-sip-port", "5061"), variables)
            listeners.append(Listener("tls", host, int(tls) if tls.isdigit() else 5061, where))
        ext = _expand(params.get("ext-sip-ip", ""), variables)
        if _address(ext) != "0.0.0.0":
            externals.append(ext)
        if port != 5060 and not host.startswith("127."):
            notes.append(
                f"{where}: SIP on {host}:{port} stays public: limit it to your trunks'"
                " addresses in the firewall, or put it behind the edge too"
            )
    if not listeners:
        return None
    log = first_existing(
        root, "/var/log/freeswitch/freeswitch.log", "/usr/local/freeswitch/log/freeswitch.log"
    )
    unit = journal_unit(root, "freeswitch.service")
    logs = (
        (LogSource("freeswitch", path=log),)
        if log
        else (LogSource("freeswitch", journal=unit),)
        if unit
        else ()
    )
    return Pbx(
        "freeswitch",
        tuple(files),
        tuple(listeners),
        external=externals[0] if externals else None,
        rtp_ports=_rtp_ports(root, home),
        logs=logs,
        notes=tuple(notes),
    )


def _rtp_ports(root: Path, home: str) -> tuple[int, int]:
    start, end = 16384, 32768  # FreeSWITCH's defaults
    try:
        tree = ET.fromstring(_read(root, f"{home}/autoload_configs/switch.conf.xml"))
    except (OSError, ET.ParseError):
        return start, end
    for p in tree.iter("param"):
        value = p.get("value", "")
        if p.get("name") == "rtp-start-port" and value.isdigit():
            start = int(value)
        elif p.get("name") == "rtp-end-port" and value.isdigit():
            end = int(value)
    return start, end


def _param_line(name: str) -> re.Pattern[str]:
    return re.compile(rf'(<param\s+name="{re.escape(name)}"\s+value=")([^"]*)(")')


def edge_change(root: Path, pbx: Pbx, public: str | None, port: int) -> list[FileChange]:
    home = _home(root)
    if home is None:
        return []
    vars_path = f"{home}/vars.xml"
    vars_old = _read(root, vars_path)
    variables = _variables(vars_old)
    vars_new = vars_old
    changes = []
    for path, _, params in _profiles(root, home):
        port_text = _expand(params.get("sip-port", "5060"), variables)
        if port_text != "5060":
            continue
        old = _read(root, path)
        new = old
        written = params.get("sip-port", "")
        if m := _VAR.fullmatch(written):  # the port lives in vars.xml
            vars_new = re.sub(
                rf'(data="{re.escape(m[1])}=)5060(")', rf"\g<1>{port}\2", vars_new, count=1
            )
        else:
            new = _param_line("sip-port").sub(rf"\g<1>{port}\3", new, count=1)
        if "sip-ip" in params:
            new = _param_line("sip-ip").sub(r"\g<1>127.0.0.1\3", new, count=1)
        else:  # the default is every address: say loopback, after sip-port
            new = re.sub(
                r'^(\s*)(<param\s+name="sip-port"[^\n]*\n)',
                r'\1\2\1<param name="sip-ip" value="127.0.0.1"/>\n',
                new,
                count=1,
                flags=re.M,
            )
        new = "".join(line for line in new.splitlines(keepends=True) if '"ext-sip-ip"' not in line)
        if new != old:
            changes.append(FileChange(path, old, new))
    if vars_new != vars_old:
        changes.insert(0, FileChange(vars_path, vars_old, vars_new))
    return changes
