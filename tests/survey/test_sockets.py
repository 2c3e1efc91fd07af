"""/proc/net's tables read as `init` reads them (IPv4 and IPv6, UDP and
listening TCP), and this machine's own: a socket the test binds is found."""

from __future__ import annotations

import socket
from pathlib import Path

from sipwarden.survey.sockets import bound

V6_LINE = (
    "   0: 00000000000000000000000001000000:13C4 00000000000000000000000000000000:0000 07"
    " 00000000:00000000 00:00000000 00000000     0        0 5151 2 0000000000000000 0\n"
)


def test_ipv6_addresses_are_read_in_host_byte_order(tmp_path: Path) -> None:
    net = tmp_path / "proc/net"
    net.mkdir(parents=True)
    header = "  sl  local_address remote_address st tx rx tr tm retr uid timeout inode\n"
    (net / "udp6").write_text(header + V6_LINE)
    (net / "tcp6").write_text(
        header
        + "   0: B80D0120000000000000000001000000:13C5 00000000000000000000000000000000:0000 0A"
        " 00000000:00000000 00:00000000 00000000     0        0 5252 1 0000000000000000 100 0 0 10 0\n"
    )
    found = {(s.transport, s.host, s.port) for s in bound(tmp_path)}
    assert found == {("udp", "::1", 5060), ("tcp", "2001:db8::1", 5061)}


def test_a_socket_of_this_machine_is_found_with_its_program() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        found = [x for x in bound(Path("/"), frozenset({port})) if x.host == "127.0.0.1"]
    assert [(x.transport, x.port) for x in found] == [("udp", port)]
    assert found[0].program  # our own process: its name is readable
