"""Start-up checks: what would stop `sipwarden run`, said before it starts.

``run`` calls ``check`` first, before it reads the flow key, opens the
store, touches the kernel or forks a worker. Each problem is one line that
names the config key, its value and what to do (the house rule for config
errors); ``check`` raises a ``ConfigError`` holding one line per problem,
so an operator fixes them all in one go, never reads a traceback.

What it checks, for the files and addresses the config names:

- ``storage.path``: a file (not a directory) in a directory that exists;
- ``control.socket``: in a directory that exists, not a directory or a
  plain file, short enough for a Unix socket (every worker's), and no
  other sipwarden answering on it;
- the edge's TLS files (``edge.tls_certificate``, ``edge.tls_key``,
  ``edge.backend_ca_file``): they exist and load;
- ``edge.listen``: each address can be bound (on this machine, the port
  free), by binding it as the edge will and letting it go at once;
- ``edge.backend``: this machine has a route to it;
- a mode: the edge, host mode or a logwatch source (``config.mode_problem``);
- with no edge (no ``[edge]``, or ``listen = []``), none of the edge's;
- ``[host]`` on: no edge listener on the PBX's ports.
- the capabilities: with ``firewall.enforcer = "nftables"``, CAP_NET_ADMIN
  for the ``nft`` and ``conntrack`` it runs (as a non-root user it must be
  ambient, or the children do not get it); CAP_NET_BIND_SERVICE for a
  privileged port (below 1024, or the sysctl net.ipv4.ip_unprivileged_port_start)
  is said by the bind check. ``missing_capabilities`` is public for
  ``doctor``, and takes host mode's NFQUEUE (CAP_NET_ADMIN in the daemon
  itself: ``queue=``).

Bounds: a handful of system calls, no packet sent. A TCP or TLS backend
that refuses connections is not a reason to stay down (the PBX may start
after the edge, and meanwhile the edge still hides it): the edge says so
in its log, naming ``edge.backend`` (``edge/server.py``). The checks are a
snapshot: another program may take a port between the check and the bind
(then the bind's own error stops start-up).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from pathlib import Path

from ..config import Config, ConfigError, EdgeConfig, Endpoint, mode_problem
from ..edge import local_address_towards
from .control import worker_path

# what each TLS file of the edge must be
TLS_FILES = {
    "edge.tls_certificate": "give the PEM certificate (chain) the edge presents over TLS",
    "edge.tls_key": "give the PEM private key of edge.tls_certificate",
}
# sun_path holds 108 bytes, the last a NUL (unix(7))
UNIX_PATH_MAX = 107
# capability numbers (linux/capability.h)
CAP_NET_BIND_SERVICE = 10
CAP_NET_ADMIN = 12
# how to give them, said with every missing one
GRANT = (
    "run it as the systemd unit does (`sipwarden service install`: AmbientCapabilities="
    "CAP_NET_ADMIN CAP_NET_BIND_SERVICE), or with `setpriv --inh-caps=+net_admin,"
    "+net_bind_service --ambient-caps=+net_admin,+net_bind_service`, or as root"
)


def check(config: Config) -> None:
    """Raise a ``ConfigError`` (one line per problem) if start-up would fail."""
    found = problems(config)
    if found:
        raise ConfigError("\n".join(found))


def problems(config: Config) -> list[str]:
    """Every problem found, one line each (empty: nothing stops start-up)."""
    edge = config.edge
    no_mode = mode_problem(config)
    found = [
        *([no_mode] if no_mode else []),
        *missing_capabilities(config, queue=config.host.enabled),
        *_storage(config.storage.path),
        *_control(config.control.socket, edge.workers),
        *_host(config),
    ]
    if not edge.listen:  # no edge: its files, ports and backend are not used
        return found
    found += _tls(edge)
    for i, ep in enumerate(edge.listen):
        try:
            _bind_once(ep)
        except OSError as exc:
            found.append(bind_problem(f"edge.listen[{i}]", ep, exc))
    try:
        local_address_towards(edge.backend.host, edge.backend.port)
    except OSError as exc:
        found.append(
            f"{_named('edge.backend', edge.backend)}: this machine has no route to it"
            f" ({os.strerror(exc.errno or 0)}): check the address, and the routes"
            f" (`ip route get {edge.backend.host}`)"
        )
    return found


def _host(config: Config) -> list[str]:
    """The edge must not listen on the PBX's ports in host mode (its
    capability, CAP_NET_ADMIN for NFQUEUE: ``missing_capabilities``)."""
    host = config.host
    if not host.enabled:
        return []
    found = []
    taken = {p for p in (*host.ports, *host.tls_ports)}
    for i, ep in enumerate(config.edge.listen):
        if ep.port in taken:
            found.append(
                f"{_named(f'edge.listen[{i}]', ep)}: port {ep.port} is the PBX's"
                " (host.ports, host.tls_ports): the edge must listen elsewhere in host mode"
            )
    return found


def bind_problem(key: str, address: object, exc: OSError) -> str:
    """One line for an address the kernel would not let us listen on."""
    fix = {
        errno.EADDRINUSE: "another program listens on this port (`ss -lnptu` shows which):"
        " stop it or choose another port",
        errno.EADDRNOTAVAIL: "the address is not one of this machine's (`ip addr` lists them):"
        " use one of them, or 0.0.0.0 or [::] for all",
        errno.EACCES: "not permitted: a port below net.ipv4.ip_unprivileged_port_start"
        f" (1024 by default) needs CAP_NET_BIND_SERVICE: {GRANT}",
        errno.EAFNOSUPPORT: "IPv6 is off on this machine: use an IPv4 address",
    }.get(exc.errno or 0, "use an address and port this machine can listen on")
    # asyncio words its errors "error while attempting to bind on address ...";
    # the errno's own text is the short, plain one
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{_named(key, address)}: cannot listen ({reason}): {fix}"


def missing_capabilities(config: Config, *, queue: bool = False) -> list[str]:
    """One line per capability the config needs and this process lacks.

    The kernel's tables are changed by ``nft`` and ``conntrack`` run as
    children: a non-root process passes a capability on to them only if
    it is ambient. ``queue``: the daemon itself reads packets from NFQUEUE
    (host mode: the caller passes ``config.host.enabled``), for which the
    effective set is what counts."""
    effective, ambient = capability_sets()
    if effective is None or ambient is None:
        return []  # not Linux's /proc: nft's own error will say it
    held = bool(effective >> CAP_NET_ADMIN & 1)
    found: list[str] = []
    if queue and not held:
        found.append(
            f"host.enabled = true: sipwarden (uid {os.geteuid()}) lacks"
            f" CAP_NET_ADMIN, which reading packets from NFQUEUE needs: {GRANT}"
        )
    if config.firewall.enforcer != "nftables":
        return found
    passed_on = os.geteuid() == 0 or bool(ambient >> CAP_NET_ADMIN & 1)
    key = _named("firewall.enforcer", config.firewall.enforcer)
    if not held:
        found.append(
            f"{key}: sipwarden (uid {os.geteuid()}) lacks CAP_NET_ADMIN, which nft and conntrack"
            f' need to change the kernel\'s tables: {GRANT}; or set [firewall] enforcer = "none"'
        )
    elif not passed_on:  # file capabilities on the interpreter, a unit without AmbientCapabilities
        found.append(
            f"{key}: sipwarden holds CAP_NET_ADMIN but not as an ambient capability, so nft"
            f" and conntrack would run without it: {GRANT}"
        )
    return found


def capability_sets() -> tuple[int | None, int | None]:
    """This process's effective and ambient capability sets (bit masks),
    from /proc/self/status; None where unknown."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("CapEff", "CapAmb"):
                    found[name] = int(value.strip(), 16)
    except (OSError, ValueError):
        return None, None
    return found.get("CapEff"), found.get("CapAmb")


def _named(key: str, value: object) -> str:
    return f"{key} = {str(value)!r}"


def _storage(path: Path) -> list[str]:
    if path.is_dir():
        return [
            f"{_named('storage.path', path)}: is a directory: name the database file,"
            f" e.g. {str(path / 'sipwarden.db')!r}"
        ]
    if not path.parent.is_dir():
        return [
            f"{_named('storage.path', path)}: the directory {str(path.parent)!r} does not"
            " exist: create it (writable by sipwarden's user) or choose a file in one that does"
        ]
    if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        return [
            f"{_named('storage.path', path)}: sipwarden's user cannot create files in"
            f" {str(path.parent)!r}: give it write access there or choose another directory"
        ]
    return []


def _control(path: Path, workers: int) -> list[str]:
    key = _named("control.socket", path)
    if path.is_dir():
        return [
            f"{key}: is a directory: name the socket file, e.g. {str(path / 'sipwarden.sock')!r}"
        ]
    if not path.parent.is_dir():
        return [
            f"{key}: the directory {str(path.parent)!r} does not exist: create it"
            " (writable by sipwarden's user) or choose a path in one that does"
        ]
    if path.exists() and not path.is_socket():
        return [
            f"{key}: a file that is not a socket is in the way: remove it or choose another path"
        ]
    if path.is_socket() and _answers(path):
        # said here, or the ports it holds would be the only complaint
        return [
            f"{key}: another sipwarden is running with this control socket: stop it, or give"
            " this one a control socket (and ports) of its own"
        ]
    longest = worker_path(path, workers - 1)
    if len(os.fsencode(longest)) > UNIX_PATH_MAX:
        return [
            f"{key}: {str(longest)!r} is {len(os.fsencode(longest))} bytes long, and a Unix"
            f" socket's path can be at most {UNIX_PATH_MAX}: choose a shorter path"
        ]
    return []


def _answers(path: Path) -> bool:
    """Whether a process listens on the Unix socket ``path`` (a crash
    leaves a socket nobody listens on; the daemon replaces it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def _tls(edge: EdgeConfig) -> list[str]:
    found: list[str] = []
    serves_tls = any(ep.transport == "tls" for ep in edge.listen) or edge.backend.transport == "tls"
    files = {"edge.tls_certificate": edge.tls_certificate, "edge.tls_key": edge.tls_key}
    for key, path in files.items():
        if serves_tls and path is not None and (problem := _readable(path)):
            found.append(f"{_named(key, path)}: {problem}: {TLS_FILES[key]}")
    # the model makes a TLS listener or backend name both files
    if serves_tls and not found and edge.tls_certificate and edge.tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                edge.tls_certificate, edge.tls_key
            )
        except (ssl.SSLError, OSError) as exc:
            found.append(
                f"{_named('edge.tls_certificate', edge.tls_certificate)},"
                f" {_named('edge.tls_key', edge.tls_key)}: not a PEM certificate (chain) and"
                f" its private key ({_ssl_reason(exc)}): check both files"
            )
    ca = edge.backend_ca_file
    if edge.backend.transport == "tls" and ca is not None:
        if problem := _readable(ca):
            found.append(
                f"{_named('edge.backend_ca_file', ca)}: {problem}: give the CA certificates (PEM)"
                " that signed the PBX's, or remove the key to use the system's CAs"
            )
        else:
            try:
                ssl.create_default_context(cafile=ca)
            except (ssl.SSLError, OSError) as exc:
                found.append(
                    f"{_named('edge.backend_ca_file', ca)}: not PEM CA certificates"
                    f" ({_ssl_reason(exc)}): give the CA that signed the PBX's"
                )
    return found


def _ssl_reason(exc: OSError) -> str:
    """OpenSSL's short reason (KEY_VALUES_MISMATCH), else a plain one."""
    if isinstance(exc, ssl.SSLError):  # its errno is OpenSSL's, not the system's
        return exc.reason or "OpenSSL cannot read it as PEM"
    return os.strerror(exc.errno or 0)


def _readable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None."""
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory"
    except OSError as exc:
        return f"cannot read it ({os.strerror(exc.errno or 0)})"


def _bind_once(ep: Endpoint) -> None:
    """Bind ``ep`` as the edge will (IPv6 only on IPv6; TCP with
    SO_REUSEADDR, as asyncio's servers), and let it go at once."""
    family = socket.AF_INET6 if ep.family_v6 else socket.AF_INET
    kind = socket.SOCK_DGRAM if ep.transport == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        if ep.family_v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ep.host, ep.port))
