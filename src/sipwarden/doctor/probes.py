"""The doctor's probes: each looks at one thing on this machine and returns
a ``Result`` (``judge.py`` judges what they read).

Bounds: every network probe has a timeout (``timeout``, 2 s by default;
the PBX's OPTIONS is sent three times within it, as UDP retransmits); the
kernel is touched only in a scratch table of our own, named after this
process and deleted in the same batch; the store is written only inside
a transaction that is rolled back; the feeds get one request each
(APIBAN: one ``check`` of a documentation address, well within its rate
limit). Nothing here bans, binds a port for longer than the test of it,
or changes the PBX.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from ..config import Config, Endpoint
from ..daemon.control import ControlError, ask, worker_path
from ..daemon.intel import apiban_settings
from ..daemon.preflight import bind_problem
from ..edge import local_address_towards
from ..intel.apiban import check_request
from ..sip import SipError, peek
from .judge import (
    Fate,
    Listener,
    Probe,
    Result,
    failed,
    fate,
    has_net_admin,
    listeners,
    passed,
    skipped,
)

TIMEOUT: Final = 2.0  # seconds: each network probe
NFT_TIMEOUT: Final = 10.0  # seconds: each nft command
CHECK_ADDRESS: Final = "198.51.100.1"  # what APIBAN is asked about (documentation range)
PROC_NET: Final = Path("/proc/net")
Reader = Callable[[], dict[str, Any] | None]  # the ruleset as nft -j gives it (None: unreadable)


# ------------------------------------------------------------------ ports


def ports(config: Config) -> list[Result]:
    """Each ``edge.listen`` address: free, or held by the sipwarden running
    with this config (its control socket answers)."""
    results = []
    ours: bool | None = None
    for i, ep in enumerate(config.edge.listen):
        key = f"edge.listen[{i}]"
        try:
            _bind_once(ep)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                if ours is None:
                    ours = _daemon_answers(config)
                if ours:
                    results.append(
                        passed(
                            f"port {ep}",
                            f"{key} = {str(ep)!r}: held by the sipwarden running with this"
                            " config (its control socket answers)",
                        )
                    )
                    continue
                owner = owner_of(ep.transport, ep.port)
                results.append(
                    failed(
                        f"port {ep}",
                        f"{key} = {str(ep)!r}: the port is held by"
                        f" {owner or 'another program'}, not by sipwarden",
                        f"stop or move {owner or 'it'} (`ss -lnp sport = :{ep.port}`), or"
                        f" change {key}",
                    )
                )
            else:
                problem = bind_problem(key, ep, exc)
                results.append(failed(f"port {ep}", problem, problem.split("): ", 1)[-1]))
            continue
        results.append(passed(f"port {ep}", f"{key} = {str(ep)!r}: free"))
    return results


def _bind_once(ep: Endpoint) -> None:
    family = socket.AF_INET6 if ":" in ep.host else socket.AF_INET
    kind = socket.SOCK_DGRAM if ep.transport == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ep.host, ep.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)


def _daemon_answers(config: Config) -> bool:
    try:
        ask(worker_path(config.control.socket, 0), {"cmd": "stats"}, timeout=TIMEOUT)
    except (ControlError, OSError):
        return False
    return True


def owner_of(transport: str, port: int) -> str | None:
    """The program holding ``port`` ("kamailio (pid 42)"), from the socket's
    inode in /proc/net and the processes' file descriptors (bounded: one
    pass over /proc)."""
    proto: Literal["udp", "tcp"] = "udp" if transport == "udp" else "tcp"
    inodes = {lst.inode for lst in local_listeners(proto) if lst.port == port and lst.inode != 0}
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            for fd in fds:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    return f"{comm} (pid {pid})"
        except OSError:
            continue
    return None


def local_listeners(proto: Literal["udp", "tcp"]) -> list[Listener]:
    found = []
    for name in (proto, f"{proto}6"):
        try:
            found += listeners((PROC_NET / name).read_text(), proto)
        except OSError:
            continue
    return found


# --------------------------------------------------------------------- PBX


def pbx(config: Config, timeout: float = TIMEOUT) -> Result:
    """One OPTIONS to ``edge.backend`` from the edge's side, over its
    transport; any final answer means the PBX is there."""
    backend = config.edge.backend
    name = f"edge.backend = {str(backend)!r}"
    fix = (
        f"start the PBX, or check that it listens on {backend.host}:{backend.port}"
        f" over {backend.transport.upper()} (`ss -lnp`) and answers OPTIONS from"
        " the edge's address"
    )
    try:
        inside = local_address_towards(backend.host, backend.port)
    except OSError as exc:
        return failed(
            "pbx",
            f"{name}: this machine has no route to it ({exc.strerror})",
            f"check the address and the routes (`ip route get {backend.host}`)",
        )
    started = time.monotonic()
    try:
        status = _options(backend, inside, timeout, config.edge.backend_ca_file)
    except ConnectionRefusedError:
        return failed("pbx", f"{name}: refused: nothing listens there", fix)
    except TimeoutError:
        return failed("pbx", f"{name}: the PBX did not answer OPTIONS within {timeout:g} s", fix)
    except ssl.SSLError as exc:
        return failed(
            "pbx",
            f"{name}: the TLS handshake failed ({exc.reason or exc})",
            "set edge.backend_ca_file to the CA that signed the PBX's certificate",
        )
    except OSError as exc:
        return failed("pbx", f"{name}: {exc.strerror or exc}", fix)
    took = (time.monotonic() - started) * 1000
    return passed("pbx", f"{name}: answered OPTIONS with {status} in {took:.0f} ms (from {inside})")


def _options(backend: Endpoint, inside: str, timeout: float, ca: Path | None) -> int:
    """Send OPTIONS and wait for a final answer: its status."""
    family = socket.AF_INET6 if ":" in backend.host else socket.AF_INET
    deadline = time.monotonic() + timeout
    if backend.transport == "udp":
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((inside, 0))
            sock.connect((backend.host, backend.port))
            request = _request(backend, inside, sock.getsockname()[1])
            resend = 0.0
            while (left := deadline - time.monotonic()) > 0:
                now = time.monotonic()
                if now >= resend:  # sent three times within the timeout, as a UAC would
                    sock.send(request)
                    resend = now + timeout / 3
                sock.settimeout(max(0.01, min(left, resend - now)))
                try:
                    data = sock.recv(65_535)
                except TimeoutError:
                    continue
                status = _final(data)
                if status is not None:
                    return status
            raise TimeoutError
    raw = socket.create_connection(
        (backend.host, backend.port), timeout=timeout, source_address=(inside, 0)
    )
    with raw:
        conn: socket.socket = raw
        if backend.transport == "tls":
            ctx = ssl.create_default_context(cafile=ca)
            ctx.check_hostname = False
            conn = ctx.wrap_socket(raw)
        conn.sendall(_request(backend, inside, conn.getsockname()[1]))
        buffer = b""
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(65_535)
            if not chunk:
                raise ConnectionRefusedError
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                status = _final(head + b"\r\n\r\n")
                if status is not None:
                    return status
        raise TimeoutError


def _request(backend: Endpoint, inside: str, port: int) -> bytes:
    host = f"[{inside}]" if ":" in inside else inside
    target = f"[{backend.host}]" if ":" in backend.host else backend.host
    tag = secrets.token_hex(6)
    return (
        f"OPTIONS sip:{target}:{backend.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{backend.transport.upper()} {host}:{port};branch=z9hG4bK-doctor-{tag};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:sipwarden-doctor@{host}>;tag={tag}\r\n"
        f"To: <sip:{target}:{backend.port}>\r\n"
        f"Call-ID: doctor-{tag}@{host}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "User-Agent: sipwarden-doctor\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _final(data: bytes) -> int | None:
    try:
        status = peek(data).status
    except SipError:
        return None
    return status if status is not None and status >= 200 else None


# ---------------------------------------------------------------- nftables


def nftables(config: Config, status_text: str | None = None) -> list[Result]:
    """The nft binary, CAP_NET_ADMIN and the kernel (a scratch table), when
    ``[firewall] enforcer = "nftables"``; NFQUEUE too when host mode is on."""
    if config.firewall.enforcer != "nftables":
        return [
            skipped(
                "nftables",
                '[firewall] enforcer = "none": bans stay in the edge, the kernel is not used',
            )
        ]
    results = []
    nft = shutil.which("nft")
    if nft is None:
        results.append(
            failed(
                "nft binary",
                "nft is not on PATH: bans cannot reach the kernel",
                'install nftables (apt-get install nftables), or set [firewall] enforcer = "none"',
            )
        )
    else:
        results.append(passed("nft binary", nft))
    if status_text is None:
        status_text = Path("/proc/self/status").read_text()
    admin = has_net_admin(status_text)
    if admin is False:
        results.append(
            failed(
                "CAP_NET_ADMIN",
                "this process has no CAP_NET_ADMIN in its effective capabilities"
                " (CapEff of /proc/self/status): nftables refuses it",
                "run as root, or as the service unit does (AmbientCapabilities=CAP_NET_ADMIN"
                " CAP_NET_BIND_SERVICE; `sipwarden service install`)",
            )
        )
    else:
        results.append(passed("CAP_NET_ADMIN", "held (effective)"))
    if nft is None or admin is False:
        results.append(skipped("nftables kernel", "not tried: see the lines above"))
        if host_mode(config):
            results.append(skipped("nfqueue", "not tried: see the lines above"))
        return results
    scratch = f"sipwarden_doctor_{os.getpid()}"
    error = _nft_batch(
        nft,
        f"table inet {scratch} {{\n"
        "  set banned { type ipv4_addr; flags interval, timeout; }\n"
        "  chain pre { type filter hook prerouting priority -300; policy accept;"
        " ip saddr @banned drop; }\n"
        "}\n"
        f"delete table inet {scratch}\n",
    )
    if error is None:
        results.append(
            passed("nftables kernel", "a scratch table with a set and a hook was made and removed")
        )
    else:
        results.append(
            failed(
                "nftables kernel",
                f"the kernel refused a scratch table: {error}",
                "load the nf_tables modules (modprobe nf_tables), or run on a kernel with"
                " nftables (Linux 4.10 or later with CONFIG_NF_TABLES)",
            )
        )
    if host_mode(config):
        results.append(nfqueue(nft, scratch))
    return results


def host_mode(config: Config) -> bool:
    """Host mode on (issue 17's ``[host] enabled``: on its own branch; this
    is the doctor's hook: once ``Config`` has ``host``, NFQUEUE is checked)."""
    host = getattr(config, "host", None)
    return bool(getattr(host, "enabled", False))


def nfqueue(nft: str, scratch: str) -> Result:
    """A ``queue`` rule in a scratch table: the kernel's NFQUEUE for host mode."""
    error = _nft_batch(
        nft,
        f"table inet {scratch} {{\n"
        "  chain input { type filter hook input priority 0; policy accept;"
        " udp dport 65535 queue num 65535 bypass; }\n"
        "}\n"
        f"delete table inet {scratch}\n",
    )
    if error is None:
        return passed("nfqueue", "a queue rule was accepted in a scratch table")
    iptables = shutil.which("iptables")
    if iptables is not None and _iptables_queue(iptables, scratch) is None:
        return passed(
            "nfqueue", f"nft has no queue statement here ({error}); iptables' NFQUEUE target works"
        )
    return failed(
        "nfqueue",
        f"the kernel refused a queue rule: {error}",
        "load nfnetlink_queue and nft_queue (modprobe nfnetlink_queue nft_queue): host mode needs them",
    )


def _iptables_queue(iptables: str, scratch: str) -> str | None:
    """The iptables NFQUEUE target in a scratch chain (host mode's fallback); its error."""
    chain = scratch[:28]  # iptables' chain names are short
    steps = (
        ["-N", chain],
        ["-A", chain, "-p", "udp", "--dport", "65535", "-j", "NFQUEUE", "--queue-num",
         "65535", "--queue-bypass"],
    )  # fmt: skip
    try:
        for step in steps:
            done = subprocess.run(
                [iptables, "-w", *step], capture_output=True, text=True, timeout=NFT_TIMEOUT
            )
            if done.returncode != 0:
                return " ".join(done.stderr.split())[:300] or f"exit {done.returncode}"
        return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    finally:
        for step in (["-F", chain], ["-X", chain]):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([iptables, "-w", *step], capture_output=True, timeout=NFT_TIMEOUT)


def _nft_batch(nft: str, script: str) -> str | None:
    """Run one nft batch; its error (one line), or None."""
    try:
        done = subprocess.run(
            [nft, "-f", "-"], input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return " ".join(done.stderr.split())[:300] or f"exit {done.returncode}"
    return None


def read_ruleset() -> dict[str, Any] | None:
    """The ruleset as ``nft -j list ruleset`` gives it (None: no nft, no right)."""
    nft = shutil.which("nft")
    if nft is None:
        return None
    try:
        done = subprocess.run(
            [nft, "-j", "list", "ruleset"], capture_output=True, text=True, timeout=NFT_TIMEOUT
        )
        if done.returncode != 0:
            return None
        ruleset = json.loads(done.stdout or "{}")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return ruleset if isinstance(ruleset, dict) else None


# ------------------------------------------------------------------- store


def store(config: Config) -> Result:
    """``storage.path``: its directory exists and takes files, and the
    database (if there) takes a write (a transaction rolled back)."""
    path = config.storage.path
    key = f"storage.path = {str(path)!r}"
    where = path.parent
    user = f"uid {os.geteuid()}"
    fix = (
        f"make {where} writable by the user sipwarden runs as ({user}: chown or chmod),"
        " or set storage.path to a writable place (the service's /var/lib/sipwarden)"
    )
    if not where.is_dir():
        return failed(
            "store", f"{key}: the directory {where} does not exist", f"create {where}, or {fix}"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".sipwarden-doctor-"):
            pass
    except OSError as exc:
        return failed(
            "store", f"{key}: the directory {where} is read-only for {user} ({exc.strerror})", fix
        )
    if path.exists():
        try:
            db = sqlite3.connect(path, timeout=TIMEOUT)
            try:
                db.execute("BEGIN IMMEDIATE")  # takes the write lock; nothing is changed
                db.execute("CREATE TABLE sipwarden_doctor (x)")
                db.rollback()
            finally:
                db.close()
        except sqlite3.Error as exc:
            return failed("store", f"{key}: the database takes no write ({exc})", fix)
        return passed("store", f"{key}: the database takes writes")
    return passed("store", f"{key}: not made yet; its directory {where} takes files")


# ------------------------------------------------------------------- feeds


def feeds(config: Config, timeout: float = TIMEOUT) -> list[Result]:
    """APIBAN (one check request with the key) and each URL feed (one GET)."""
    import httpx  # (here: `sipwarden doctor --help` does not pay for it)

    results = []
    settings = apiban_settings(config.intel)
    if settings is None and not config.intel.feeds:
        return [skipped("feeds", "none configured")]
    with httpx.Client(timeout=timeout, follow_redirects=True) as http:
        if settings is not None:
            request = check_request(settings, CHECK_ADDRESS)
            url = settings.redact(request.url)
            try:
                answer = http.request(
                    request.method, request.url, headers=dict(request.headers), json=request.json
                )
            except httpx.HTTPError as exc:
                results.append(
                    failed(
                        "feed apiban",
                        f"intel.apiban.url: {url} is unreachable ({settings.redact(str(exc)) or type(exc).__name__})",
                        "check the machine's outbound HTTPS (DNS, proxy, firewall) and intel.apiban.url",
                    )
                )
            else:
                if answer.status_code in (401, 403):
                    results.append(
                        failed(
                            "feed apiban",
                            f"intel.apiban.key: APIBAN refused the key (HTTP {answer.status_code})",
                            "set intel.apiban.key (or SIPWARDEN_APIBAN_KEY) to the key apiban.org"
                            " gave you",
                        )
                    )
                elif answer.status_code == 429:
                    results.append(
                        passed("feed apiban", f"{url}: key accepted, rate limited just now (429)")
                    )
                elif answer.status_code >= 500:
                    results.append(
                        failed(
                            "feed apiban",
                            f"{url}: APIBAN answered HTTP {answer.status_code}",
                            "try again later; the last good list is kept meanwhile",
                        )
                    )
                else:
                    results.append(passed("feed apiban", f"{url}: answered, the key accepted"))
        for feed in config.intel.feeds:
            name = f"feed {feed.name}"
            if feed.url is None:
                assert feed.path is not None
                if os.access(feed.path, os.R_OK):
                    results.append(passed(name, f"{feed.path}: readable"))
                else:
                    results.append(
                        failed(
                            name,
                            f"intel.feeds ({feed.name}): {feed.path} cannot be read",
                            "check the path and its permissions",
                        )
                    )
                continue
            try:
                with http.stream("GET", feed.url, headers=feed.headers) as answer:
                    code = answer.status_code
            except httpx.HTTPError as exc:
                results.append(
                    failed(
                        name,
                        f"intel.feeds ({feed.name}): {feed.url} is unreachable ({exc or type(exc).__name__})",
                        "check the URL and the machine's outbound HTTP(S)",
                    )
                )
                continue
            if code in (401, 403):
                results.append(
                    failed(
                        name,
                        f"intel.feeds ({feed.name}): {feed.url} refused us (HTTP {code})",
                        "check the feed's headers (its token)",
                    )
                )
            elif code >= 400:
                results.append(
                    failed(
                        name,
                        f"intel.feeds ({feed.name}): {feed.url} answered HTTP {code}",
                        "check the URL",
                    )
                )
            else:
                results.append(passed(name, f"{feed.url}: answered HTTP {code}"))
    return results


# -------------------------------------------------------- bypass and RTP


def is_local(host: str) -> bool:
    """Whether ``host`` is an address of this machine."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


def bypass(config: Config, ruleset: Reader = read_ruleset) -> Result:
    """The PBX's SIP port listening on a public address with nothing in the
    firewall limiting it to the edge: scanners can reach it around us."""
    backend = config.edge.backend
    proto: Literal["udp", "tcp"] = "udp" if backend.transport == "udp" else "tcp"
    if not is_local(backend.host):
        return skipped(
            "bypass",
            f"the PBX ({backend.host}) is another machine: check there that its SIP port"
            " takes traffic from the edge only",
        )
    exposed = [lst for lst in local_listeners(proto) if lst.port == backend.port and lst.public]
    if not exposed:
        return passed(
            "bypass",
            f"the PBX's {proto}/{backend.port} listens on no public address",
        )
    where = ", ".join(sorted({lst.host for lst in exposed}))
    rules = ruleset()
    family: Literal["ip", "ip6"] = "ip6" if all(":" in lst.host for lst in exposed) else "ip"
    verdict = None if rules is None else fate(rules, Probe(family, proto, backend.port))
    fix = (
        f"bind the PBX to {backend.host} only, or limit the port to the edge:"
        f" `nft add rule inet filter input {proto} dport {backend.port} ip saddr != {backend.host} drop`"
        " (in a table with an input chain)"
    )
    if verdict is None:
        return failed(
            "bypass",
            f"the PBX's {proto}/{backend.port} listens on {where} and the nftables ruleset"
            " cannot be read (nft, CAP_NET_ADMIN) to tell whether it is limited",
            fix,
        )
    if not verdict.passes:
        return passed(
            "bypass",
            f"the PBX's {proto}/{backend.port} listens on {where}, but the firewall drops"
            f" strangers there ({verdict.where})",
        )
    return failed(
        "bypass",
        f"the PBX's {proto}/{backend.port} listens on {where} and no nftables rule limits it"
        " to the edge: scanners reach the PBX around sipwarden",
        fix,
    )


_RANGE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


def rtp_range(text: str) -> tuple[int, int]:
    """``"10000-20000"`` as (10000, 20000); ValueError saying what is valid."""
    match = _RANGE.match(text.strip())
    low, high = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
    if not match or not 1 <= low <= high <= 65535:
        raise ValueError(f"--rtp-ports {text!r}: give LOW-HIGH, 1 <= LOW <= HIGH <= 65535")
    return low, high


def rtp(ports: tuple[int, int], ruleset: Reader = read_ruleset) -> Result:
    """The RTP range (UDP) accepted by the local firewall, at both ends and
    the middle: calls get audio."""
    low, high = ports
    rules = ruleset()
    span = f"udp/{low}-{high}"
    if rules is None:
        if shutil.which("nft") is None:
            return skipped("rtp", f"{span}: no nftables here (nft not on PATH) to judge")
        return failed(
            "rtp",
            f"{span}: the nftables ruleset cannot be read (CAP_NET_ADMIN) to tell",
            "run sipwarden doctor as root",
        )
    fates: list[Fate] = [
        fate(rules, Probe(family, "udp", port))
        for port in sorted({low, (low + high) // 2, high})
        for family in ("ip", "ip6")
    ]
    closed = [f for f in fates if not f.passes]
    if closed:
        return failed(
            "rtp",
            f"{span} (RTP) is dropped by the local firewall ({closed[0].where}):"
            " calls connect with no audio",
            f"accept it: `nft add rule inet filter input udp dport {low}-{high} accept`"
            " (before the drop), or match the PBX's rtp.conf range with --rtp-ports",
        )
    return passed("rtp", f"{span} (RTP): the local firewall lets it in")


def summary(results: Sequence[Result]) -> str:
    bad = sum(1 for r in results if not r.ok)
    return (
        f"doctor: {len(results)} checks, {bad} failed"
        if bad
        else (f"doctor: {len(results)} checks, all passed")
    )
