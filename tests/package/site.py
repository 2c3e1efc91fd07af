"""A namespace for the installed package to run in: the edge inside it on
port 5060, the built-in registrar (the PBX) and a phone on our end of the
veth pair. Shared by the wheel and capability tests."""

from __future__ import annotations

import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sipwarden.sip import parse

from ..edge.harness import UdpPhone, authorization, register_request
from ..edge.netns import Namespace

PORT = 5060  # privileged in the namespace (conftest.site): binding it needs CAP_NET_BIND_SERVICE


@dataclass(frozen=True)
class Site:
    ns: Namespace
    backend_port: int  # the registrar, on our end (ns.outside)

    def config(self, directory: Path, *, enforcer: str = "none", table: str = "swpkg") -> Path:
        """A config whose files are all in ``directory`` (absolute paths, as
        the packaged one), the edge on the namespace's address."""
        path = directory / "sipwarden.toml"
        path.write_text(
            f"""
[edge]
listen = ["udp:{self.ns.inside}:{PORT}", "tcp:{self.ns.inside}:{PORT}"]
backend = "udp:{self.ns.outside}:{self.backend_port}"
flow_key_file = "{directory / "flow.key"}"

[firewall]
enforcer = "{enforcer}"
table = "{table}"

[storage]
path = "{directory / "sipwarden.db"}"

[control]
socket = "{directory / "sipwarden.sock"}"

[api]
listen = ""
"""
        )
        return path

    def register(self, user: str = "100") -> list[int]:
        """A phone on our end registers through the edge: the status codes
        it got (401 then 200 when the edge forwards both ways)."""
        phone = UdpPhone(self.ns.outside)
        codes: list[int] = []
        try:
            phone.send(register_request(user, port=phone.port), PORT, self.ns.inside)
            first = phone.recv(5)
            if first is None:
                return codes
            challenge = parse(first)
            codes.append(challenge.status)
            if challenge.status != 401:
                return codes
            auth = authorization(user, challenge.www_authenticate[0])
            again = register_request(user, port=phone.port, cseq=2, auth=auth)
            phone.send(again, PORT, self.ns.inside)
            second = phone.recv(5)
            if second is not None:
                codes.append(parse(second).status)
            return codes
        finally:
            phone.close()


def first_line(proc: subprocess.Popen[bytes], timeout: float = 30) -> bytes:
    """The first line the daemon prints ("listening on ..."), or b"" if it
    printed none in ``timeout`` seconds or ended."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            return b""
    return b""
