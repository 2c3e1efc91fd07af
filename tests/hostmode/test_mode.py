"""Host mode without a kernel: ``HostMode.inbound`` and ``outbound`` on built
packets, the packets' rewriting, the queue rules' text and the [host] and
no-[edge] config."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dpkt
import pytest

from sipwarden.config import ConfigError, config_from_dict, load_config
from sipwarden.daemon import preflight
from sipwarden.enforce.queue import RESET_MARK, iptables_restore, nft_lines
from sipwarden.hostmode import HostMode, nfqueue, settings_of
from sipwarden.hostmode.packets import decode, with_udp_payload
from sipwarden.observe import FlowTable
from sipwarden.policy import build_policy
from sipwarden.values import Decision

PBX, PHONE, SCANNER = "192.0.2.10", "198.51.100.7", "203.0.113.9"
ACCEPT, DROP = nfqueue.NF_ACCEPT, nfqueue.NF_DROP


def ip_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, data=udp)
    ip.len = 20 + udp.ulen
    return bytes(ip)


def ip_tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    seq: int = 1000,
    flags: int = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, data=tcp)
    ip.len = 20 + len(bytes(tcp))
    return bytes(ip)


def register(
    ua: str = "Yealink SIP-T46S",
    *,
    auth: bool = False,
    branch: str = "z9hG4bKa1",
    call_id: str = "c1",
    transport: str = "UDP",
) -> bytes:
    lines = [
        "REGISTER sip:pbx.test SIP/2.0",
        f"Via: SIP/2.0/{transport} {PHONE}:5062;branch={branch}",
        "Max-Forwards: 70",
        "From: <sip:100@pbx.test>;tag=f1",
        "To: <sip:100@pbx.test>",
        f"Call-ID: {call_id}",
        "CSeq: 1 REGISTER",
        f"Contact: <sip:100@{PHONE}:5062>",
        f"User-Agent: {ua}",
        *(
            [
                'Authorization: Digest username="100", realm="pbx.test", nonce="n", '
                'uri="sip:pbx.test", response="00000000000000000000000000000000"'
            ]
            if auth
            else []
        ),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(status: int, reason: str, *, branch: str = "z9hG4bKa1", call_id: str = "c1") -> bytes:
    lines = [
        f"SIP/2.0 {status} {reason}",
        f"Via: SIP/2.0/UDP {PHONE}:5062;branch={branch}",
        "From: <sip:100@pbx.test>;tag=f1",
        "To: <sip:100@pbx.test>;tag=t1",
        f"Call-ID: {call_id}",
        "CSeq: 1 REGISTER",
        *(['WWW-Authenticate: Digest realm="pbx.test", nonce="abc"'] if status == 401 else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def mode(**config: object) -> HostMode:
    cfg = config_from_dict({"host": {"enabled": True}, **config})
    return HostMode(cfg.host, table="sipwarden", policy=build_policy(cfg))


def test_a_phone_passes_a_scanner_is_dropped_a_keepalive_passes():
    host = mode()
    assert host.inbound(ip_udp(PHONE, PBX, 5062, 5060, register()), 1.0)[0] == ACCEPT
    scan = register("friendly-scanner")
    assert host.inbound(ip_udp(SCANNER, PBX, 5070, 5060, scan), 1.0)[0] == DROP
    assert host.inbound(ip_udp(PHONE, PBX, 5062, 5060, b"\r\n\r\n"), 1.0)[0] == ACCEPT
    assert host.counters["dropped"] == 1 and host.counters["received"] == 3


def test_monitor_mode_judges_and_counts_but_accepts_everything():
    host = mode(policy={"mode": "monitor"}, failures={"maxretry": 2})
    scan = register("friendly-scanner")
    assert host.inbound(ip_udp(SCANNER, PBX, 5070, 5060, scan), 1.0)[0] == ACCEPT
    tcp_scan = register("friendly-scanner", transport="TCP")
    assert host.inbound(ip_tcp(SCANNER, PBX, 40000, 5060, tcp_scan), 1.0)[0] == ACCEPT
    assert host.counters["monitor:accepted"] == 2
    assert host.counters["dropped"] == host.counters["reset"] == 0
    assert sum(n for v, n in host.policy.verdicts.items() if not v.passes) == 2  # judged
    # failures are counted off the PBX's answers: a would-be ban, none made
    for i in range(2):
        branch, call = f"z9hG4bKm{i}", f"m{i}"
        sent = ip_udp(SCANNER, PBX, 5070, 5060, register(auth=True, branch=branch, call_id=call))
        host.inbound(sent, 2.0 + i)
        back = ip_udp(
            PBX, SCANNER, 5060, 5070, answer(401, "Unauthorized", branch=branch, call_id=call)
        )
        host.outbound(back, 2.0 + i)
    assert host.policy.decisions["would-ban:auth.brute-force"] == 1, host.policy.decisions
    assert host.policy.bans is not None and host.policy.bans.banned(SCANNER, 5.0) is None


def test_failed_logins_are_counted_off_the_pbx_answers_and_ban():
    host = mode(failures={"maxretry": 3})
    for i in range(3):
        branch, call = f"z9hG4bKb{i}", f"c{i}"
        sent = ip_udp(SCANNER, PBX, 5070, 5060, register(auth=True, branch=branch, call_id=call))
        assert host.inbound(sent, float(i))[0] == ACCEPT
        back = ip_udp(
            PBX, SCANNER, 5060, 5070, answer(401, "Unauthorized", branch=branch, call_id=call)
        )
        assert host.outbound(back, float(i)) is None  # read, relayed as it is
    assert host.policy.bans is not None and host.policy.bans.banned(SCANNER, 3.0)
    # banned: its next packet is dropped (the kernel would have dropped it first)
    assert host.inbound(ip_udp(SCANNER, PBX, 5070, 5060, register()), 4.0)[0] == DROP


def test_a_challenge_without_credentials_is_no_failure():
    host = mode(failures={"maxretry": 1})
    host.inbound(ip_udp(PHONE, PBX, 5062, 5060, register()), 1.0)
    host.outbound(ip_udp(PBX, PHONE, 5060, 5062, answer(401, "Unauthorized")), 1.0)
    assert host.policy.bans is not None and host.policy.bans.banned(PHONE, 2.0) is None


def test_the_pbx_answers_are_counted_in_their_client_flows():
    """As the edge counts what it sends back: the analysis finds a phone's
    2xx there (no register-no-success for a phone that logs in)."""
    cfg = config_from_dict({"host": {"enabled": True}})
    flows = FlowTable()
    host = HostMode(cfg.host, table="sipwarden", policy=build_policy(cfg), flows=flows)
    host.inbound(ip_udp(PHONE, PBX, 5062, 5060, register()), 1.0)
    host.outbound(ip_udp(PBX, PHONE, 5060, 5062, answer(401, "Unauthorized")), 1.0)
    host.outbound(ip_udp(PBX, PHONE, 5060, 5062, answer(200, "OK")), 1.0)
    (flow,) = flows.current()
    assert (flow["source"], flow["source_port"], flow["transport"]) == (PHONE, 5062, "udp")
    assert flow["packets"] == 1 and flow["answers"] == {"401": 1, "200": 1}, flow


def test_the_404_to_a_register_is_rewritten_to_the_uniform_challenge_with_good_checksums():
    host = mode()
    host.inbound(ip_udp(SCANNER, PBX, 5070, 5060, register()), 1.0)
    packet = host.outbound(ip_udp(PBX, SCANNER, 5060, 5070, answer(404, "Not Found")), 1.0)
    assert packet is not None
    ip = dpkt.ip.IP(packet)
    assert ip.len == len(packet) and ip.data.ulen == len(packet) - 20
    assert bytes(ip.data.data).startswith(b"SIP/2.0 401 ")
    # the checksums as the receiver checks them: recomputed, they come out the same
    sums = ip.sum, ip.data.sum
    ip.sum = 0
    ip.data.sum = 0
    again = dpkt.ip.IP(bytes(ip))
    assert (again.sum, again.data.sum) == sums
    assert host.counters["answers-made-uniform"] == 1


def test_ipv6_udp_is_read_and_rewritten():
    payload = answer(404, "Not Found")
    udp = dpkt.udp.UDP(sport=5060, dport=5070, data=payload)
    udp.ulen = 8 + len(payload)
    ip6 = dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
        dst=socket.inet_pton(socket.AF_INET6, "2001:db8::2"),
        nxt=17,
        hlim=64,
        data=udp,
    )
    ip6.plen = udp.ulen
    packet = bytes(ip6)
    d = decode(packet)
    assert d is not None and (d.src, d.dport, d.payload) == ("2001:db8::1", 5070, payload)
    new = with_udp_payload(packet, d, b"x" * 11)
    parsed = dpkt.ip6.IP6(new)
    assert parsed.plen == 19 and bytes(parsed.data.data) == b"x" * 11
    check = parsed.data.sum
    parsed.data.sum = 0
    assert dpkt.ip6.IP6(bytes(parsed)).data.sum == check


def test_tcp_whole_messages_by_message_partial_by_source_handshake_accepted():
    host = mode()
    syn = ip_tcp(SCANNER, PBX, 40000, 5060, b"", seq=999, flags=dpkt.tcp.TH_SYN)
    assert host.inbound(syn, 1.0)[0] == ACCEPT  # the kernel's handshake: not ours to hide
    scan = register("friendly-scanner", transport="TCP")
    verdict, mark, _ = host.inbound(ip_tcp(SCANNER, PBX, 40000, 5060, scan), 1.0)
    assert (verdict, mark) == (nfqueue.NF_REPEAT, RESET_MARK)  # the rules reset it
    # a phone's message in two segments: the first judged by source, the second by message
    msg = register(transport="TCP")
    first = ip_tcp(PHONE, PBX, 40001, 5060, msg[:50], seq=5000)
    second = ip_tcp(PHONE, PBX, 40001, 5060, msg[50:], seq=5050)
    host.inbound(ip_tcp(PHONE, PBX, 40001, 5060, b"", seq=4999, flags=dpkt.tcp.TH_SYN), 1.0)
    assert host.inbound(first, 1.0)[0] == ACCEPT
    assert host.inbound(second, 1.0)[0] == ACCEPT
    assert host.counters["judged-by-source"] == 1 and host.counters["reset"] == 1


def test_tcp_a_ping_passes_only_after_a_passed_message_on_its_connection():
    """nmap -sV's GenericLines probe is a bare CRLFCRLF, a keep-alive ping
    the PBX would pong: refused (reset) on a connection that sent nothing
    the policy passed, let through after a phone's REGISTER on it."""
    host = mode()
    ping = b"\r\n\r\n"
    host.inbound(ip_tcp(SCANNER, PBX, 40010, 5060, b"", seq=99, flags=dpkt.tcp.TH_SYN), 1.0)
    verdict, mark, _ = host.inbound(ip_tcp(SCANNER, PBX, 40010, 5060, ping, seq=100), 1.0)
    assert (verdict, mark) == (nfqueue.NF_REPEAT, RESET_MARK)
    msg = register(transport="TCP")
    host.inbound(ip_tcp(PHONE, PBX, 40011, 5060, b"", seq=199, flags=dpkt.tcp.TH_SYN), 1.0)
    assert host.inbound(ip_tcp(PHONE, PBX, 40011, 5060, msg, seq=200), 1.0)[0] == ACCEPT
    after = 200 + len(msg)
    assert host.inbound(ip_tcp(PHONE, PBX, 40011, 5060, ping, seq=after), 2.0)[0] == ACCEPT
    # the same ports on a new connection: vouched no more
    host.inbound(ip_tcp(PHONE, PBX, 40011, 5060, b"", seq=7000, flags=dpkt.tcp.TH_SYN), 3.0)
    verdict, _, _ = host.inbound(ip_tcp(PHONE, PBX, 40011, 5060, ping, seq=7001), 3.0)
    assert verdict == nfqueue.NF_REPEAT
    assert host.counters["pings-refused"] == 2 and host.counters["reset"] == 2


def test_tls_is_judged_by_source():
    host = mode()
    hello = b"\x16\x03\x01\x00\x05hello"
    assert host.inbound(ip_tcp(PHONE, PBX, 40002, 5061, hello), 1.0)[0] == ACCEPT
    assert host.policy.ban(Decision(SCANNER, "test", "a test", 600.0, ()), 1.0)
    verdict, mark, _ = host.inbound(ip_tcp(SCANNER, PBX, 40003, 5061, hello), 2.0)
    assert (verdict, mark) == (nfqueue.NF_REPEAT, RESET_MARK)
    assert host.counters["judged-by-source"] == 2


def test_the_queue_rules_bypass_when_failing_open_only():
    cfg = config_from_dict({"host": {"enabled": True, "ports": [5060, 5080], "queue": 7}})
    opened = settings_of(cfg.host, "sipwarden")
    text = iptables_restore(opened)
    assert (
        "-A sipwarden_in -p udp -m multiport --dports 5060,5080 -j NFQUEUE --queue-num 7"
        " --queue-bypass" in text
    )
    assert "--dports 5060,5061,5080 -j NFQUEUE --queue-num 7 --queue-bypass" in text
    assert (
        "-A sipwarden_out -p udp -m multiport --sports 5060,5080 -j NFQUEUE --queue-num 8" in text
    )
    assert f"--mark {RESET_MARK:#x} -j REJECT --reject-with tcp-reset" in text
    closed = settings_of(
        config_from_dict({"host": {"enabled": True, "fail": "closed"}}).host, "sipwarden"
    )
    assert "bypass" not in iptables_restore(closed)
    assert not any("bypass" in line for line in nft_lines(closed))
    assert any(
        line.endswith("queue num 5060 bypass")
        for line in nft_lines(
            settings_of(config_from_dict({"host": {"enabled": True}}).host, "sipwarden")
        )
    )


# ------------------------------------------------------------------ config


def test_a_config_file_without_edge_has_none_and_needs_a_mode(tmp_path: Path):
    assert load_config(None).edge.listen  # the embedded defaults keep the demo's edge
    path = tmp_path / "host.toml"
    path.write_text("[host]\nenabled = true\n")
    config = load_config(path)
    assert config.edge.listen == [] and config.host.enabled
    # no edge: none of its files, addresses or backend is checked
    assert not [line for line in preflight.problems(config) if "edge." in line]
    # no mode: the offline commands take it, `run` refuses it
    path.write_text(f'[storage]\npath = "{tmp_path / "x.db"}"\n')
    config = load_config(path)
    assert config.edge.listen == [] and not config.host.enabled
    with pytest.raises(ConfigError, match=r"no mode configured.*\[host\] enabled = true"):
        preflight.check(config)
    path.write_text("[edge]\nlisten = []\n")
    assert "no mode configured" in preflight.problems(load_config(path))[0]
    path.write_text("[edge]\n")  # an [edge] table, even empty: the default listeners
    assert load_config(path).edge.listen


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"edge": {"listen": [], "workers": 2}, "host": {"enabled": True}}, "edge.workers = 2"),
        ({"host": {"enabled": True, "ports": [5060], "tls_ports": [5060]}}, "host.tls_ports"),
        ({"host": {"enabled": True, "fail": "maybe"}}, "host.fail"),
        ({"host": {"enabled": True, "ports": [0]}}, "host.ports[0]"),
    ],
)
def test_host_errors_name_the_key(data, says):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert says in str(caught.value), str(caught.value)


def test_nfqueue_messages_are_read_back():
    """A packet message as the kernel words it comes out as a Packet."""
    body = struct.pack("!BBH", 2, 0, 7)
    header = struct.pack("!IHB", 42, 0x0800, 1) + b"\0"
    attrs = nfqueue.attribute(nfqueue.NFQA_PACKET_HDR, header[:7]) + nfqueue.attribute(
        nfqueue.NFQA_PAYLOAD, b"abcde"
    )
    message = body + attrs
    datagram = struct.pack("=IHHII", 16 + len(message), 3 << 8, 0, 0, 0) + message
    (packet,) = nfqueue.packets_in(memoryview(datagram))
    assert packet == nfqueue.Packet(42, 1, b"abcde")
