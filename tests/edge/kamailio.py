"""A real Kamailio (Debian's package) as the PBX: a registrar with digest
authentication (subscribers in db_text) and Path support, configured and
started by the test on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sipwarden.sip import digest_ha1

from .harness import REALM, USERS
from .netns import in_namespace

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
alias="{realm}"
listen=udp:{address}:{port}
listen=tcp:{address}:{port}
{tls_listen}
mpath="{modules}"
server_header="Server: kamailio-pbx-under-test"
user_agent_header="User-Agent: kamailio-pbx-under-test"

{tls_module}
loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "path.so"
loadmodule "db_text.so"
loadmodule "auth.so"
loadmodule "auth_db.so"

modparam("usrloc", "db_mode", 0)
modparam("registrar", "use_path", 1)
modparam("registrar", "path_mode", 0)
modparam("auth_db", "db_url", "text://{db}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
{tm_params}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) t_relay();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!auth_check("$fd", "subscriber", "1")) {{
            auth_challenge("$fd", "1");
            exit;
        }}
        if (!save("location")) sl_reply_error();
        exit;
    }}
    if (is_method("INVITE|SUBSCRIBE")) record_route();
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"""


def subscribers(tmp_path: Path) -> Path:
    """The db_text folder with the harness's users, for CONFIG's ``db``."""
    db = tmp_path / "kamdb"
    db.mkdir()
    (db / "version").write_text(
        "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n0:location:9\n"
    )
    rows = "".join(
        f"{i}:{user}:{REALM}:{password}:{digest_ha1(user, REALM, password)}:"
        f"{digest_ha1(f'{user}@{REALM}', REALM, password)}\n"
        for i, (user, password) in enumerate(USERS.items(), 1)
    )
    (db / "subscriber").write_text(
        "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) \n"
        + rows
    )
    return db


def free_udp_port() -> int:
    """A port free for UDP and for TCP on loopback (Kamailio listens on both:
    a port only UDP had free made its start fail now and then)."""
    for _ in range(100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken for TCP: another
            return int(port)
    raise RuntimeError("no port free for both UDP and TCP in 100 tries")


def available(*, tls: bool = False) -> bool:
    return (
        shutil.which("kamailio") is not None
        and (MODULES / "auth_db.so").exists()
        and (not tls or (MODULES / "tls.so").exists())
    )


TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = {key}
certificate = {cert}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


@contextmanager
def kamailio(
    tmp_path: Path,
    tls: tuple[Path, Path] | None = None,
    *,
    netns: str | None = None,
    fr_timer: int | None = None,
    address: str = "127.0.0.1",
    port: int | None = None,
) -> Iterator[int]:
    """Start Kamailio on a free loopback port (UDP and TCP; with ``tls`` =
    (certificate, key), TLS on the port above it); yield the port. With
    ``netns``, inside that network namespace, on its own loopback. With
    ``fr_timer`` (ms), a relayed request no one answers gets its 408 that
    soon (Kamailio's default: 30 s). ``address`` and ``port``: where it
    listens instead (host mode's PBX, on its namespace's public address)."""
    db = subscribers(tmp_path)
    port = port or free_udp_port()
    cfg = tmp_path / "kamailio.cfg"
    tls_listen = tls_module = ""
    if tls is not None:
        (tmp_path / "tls.cfg").write_text(TLS_CFG.format(cert=tls[0], key=tls[1]))
        tls_listen = f"enable_tls=yes\nlisten=tls:127.0.0.1:{port + 1}"
        tls_module = f'loadmodule "tls.so"\nmodparam("tls", "config", "{tmp_path / "tls.cfg"}")'
    cfg.write_text(
        CONFIG.format(
            realm=REALM,
            address=address,
            port=port,
            modules=MODULES,
            db=db,
            tls_listen=tls_listen,
            tls_module=tls_module,
            tm_params="" if fr_timer is None else f'modparam("tm", "fr_timer", {fr_timer})',
        )
    )
    log = (tmp_path / "kamailio.log").open("w")
    inside = ["ip", "netns", "exec", netns] if netns is not None else []
    proc = subprocess.Popen(
        [
            *inside,
            "kamailio",
            "-f",
            str(cfg),
            "-DD",
            "-E",
            "-m",
            "64",
            "-M",
            "8",
            "-Y",
            str(tmp_path),
            "-w",
            str(tmp_path),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"kamailio exited: {(tmp_path / 'kamailio.log').read_text()[-3000:]}"
                )
            if "listening on" in (tmp_path / "kamailio.log").read_text() or (
                _answers(port, address)
                if netns is None
                else in_namespace(netns, _answers, port, address)
            ):
                break
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _answers(port: int, address: str = "127.0.0.1") -> bool:
    probe = (
        f"OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe\r\n"
        f"From: <sip:probe@{REALM}>;tag=p\r\nTo: <sip:{REALM}>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        s.settimeout(0.2)
        probe = probe.replace(b"127.0.0.1:9", f"{address}:{s.getsockname()[1]}".encode())
        s.sendto(probe, (address, port))
        try:
            return bool(s.recv(4096))
        except TimeoutError:
            return False
