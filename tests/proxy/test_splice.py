"""The splice path gives what the general path gives, on every shape it takes.

Each case goes through the proxy twice: without a peek view (the general
path: full parse, validation, edits, re-serialisation) and with one (the
splice path where it applies). The two results must be the same message:
same destination, start line, typed Vias, and the same values for every
other header; only the placement of inserted lines and the spelling of an
untouched Via may differ.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.proxy import Drop, FlowTokens, Local, ProxySettings, Send, StatelessProxy
from sipwarden.sip import make_response, parse, peek
from sipwarden.sip.accel import SPEEDUPS
from sipwarden.values import Peer

from ..conftest import need

BACKEND = Peer("udp", "127.0.0.1", 5080)
PUBLIC = Local("udp", "198.51.100.1", 5060)
INSIDE = Local("udp", "127.0.0.1", 5062)
PHONE = Peer("udp", "203.0.113.9", 40000)


def make_proxy(server_header: str = "") -> StatelessProxy:
    settings_ = ProxySettings(
        backend=BACKEND,
        internal={"udp": INSIDE},
        public={("udp", False): PUBLIC, ("tcp", False): Local("tcp", "198.51.100.1", 5060)},
        server_header=server_header,
    )
    return StatelessProxy(settings_, FlowTokens(b"k" * 32))


@pytest.fixture(autouse=True)
def _c():
    need(SPEEDUPS is not None, "the splice path needs the C scanner (sipwarden.sip._speedups)")


def request(
    method, via, *, mf="70", to_tag="", extra=(), cseq_method=None, ruri="sip:200@pbx.example.com"
):
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: {via}",
        *([f"Max-Forwards: {mf}"] if mf is not None else []),
        '"Alice" <sip:100@pbx.example.com>;tag=f1'.join(["From: ", ""]),
        f"To: <sip:200@pbx.example.com>{to_tag}",
        "Call-ID: call-1@x",
        f"CSeq: 7 {cseq_method or method}",
        "Contact: <sip:100@192.168.1.20:5060>",
        "User-Agent: Yealink SIP-T46S",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def same_message(a: bytes, b: bytes) -> None:
    x, y = parse(a), parse(b)
    assert x.start_line == y.start_line
    assert x.vias == y.vias
    keys = {h.key for h in x.headers} | {h.key for h in y.headers}
    for key in keys - {"via"}:
        assert x.get_all(key) == y.get_all(key), key
    assert x.body == y.body


def both_paths(proxy, data, source=PHONE, local=PUBLIC):
    general = proxy.from_client(data, source, local)
    before = proxy.fast_path
    fast = proxy.from_client(data, source, local, peek(data))
    return general, fast, proxy.fast_path > before


VIAS = [
    "SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKabc;rport",
    "SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKabc",
    "SIP/2.0/UDP 203.0.113.9:40000;branch=z9hG4bKabc;rport",
    "SIP/2.0/UDP 192.168.1.20;branch=z9hG4bKabc;RPORT",
    "SIP/2.0/UDP 192.168.1.20:5070;Branch=z9hG4bKabc;rport=1234",
    "SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKv6;rport;alias",
    "SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKabc;rport , SIP/2.0/UDP h2;branch=z9hG4bK2",
]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS", "MESSAGE", "SUBSCRIBE"])
def test_fast_equals_general_for_requests(method, via):
    proxy = make_proxy()
    general, fast, took_fast = both_paths(proxy, request(method, via))
    assert len(general) == len(fast) == 1
    assert isinstance(general[0], Send) and isinstance(fast[0], Send)
    assert general[0].flow == fast[0].flow
    same_message(general[0].data, fast[0].data)
    if via.endswith(";RPORT"):
        assert not took_fast  # an upper-case flag is left to the general path
    else:
        assert took_fast


@pytest.mark.parametrize(
    "header",
    [
        'Authorization: Digest username="100", realm="pbx", nonce="n", uri="sip:pbx", response="r"',
        'Proxy-Authorization: Digest username="100", realm="pbx", nonce="n", uri="sip:pbx", response="r"',
        None,
    ],
)
def test_a_request_with_credentials_is_flagged_in_our_via_on_both_paths(header):
    """The failure tracker reads the flag off the backend's answer: a 401
    to a request with credentials is a failed login, not a first challenge."""
    data = request("REGISTER", VIAS[0], extra=[header] if header else [])
    general, fast, took_fast = both_paths(make_proxy(), data)
    assert took_fast
    for actions in (general, fast):
        ours = parse(actions[0].data).vias[0]
        assert (ours.param("swa") is not None) == (header is not None), ours
    same_message(general[0].data, fast[0].data)


@pytest.mark.parametrize(
    "data,why",
    [
        (request("INVITE", VIAS[0], mf="0"), "483"),
        (request("INVITE", VIAS[0], mf=None), "no Max-Forwards"),
        (request("INVITE", VIAS[0], cseq_method="BYE"), "CSeq mismatch"),
        (request("INVITE", VIAS[0], extra=["Route: <sip:127.0.0.1:5062;lr>"]), "Route"),
        (request("INVITE", "SIP/2.0/UDP 192.168.1.20:5060;rport"), "RFC 2543 branch"),
        (request("INVITE", VIAS[0] + ";received=192.0.2.1"), "received already set"),
        (request("INVITE", VIAS[0], ruri="<sip:200@pbx.example.com>"), "bad Request-URI"),
        (request("INVITE", VIAS[0], extra=["Call-ID: again"]), "repeated Call-ID"),
    ],
)
def test_other_shapes_take_the_general_path_with_the_same_result(data, why):
    proxy = make_proxy()
    general, fast, took_fast = both_paths(proxy, data)
    assert not took_fast, why
    assert [type(a) for a in general] == [type(a) for a in fast]
    if isinstance(general[0], Send):
        same_message(general[0].data, fast[0].data)
    else:
        assert general == fast


@pytest.mark.parametrize("neutral", ["", "edge"])
@pytest.mark.parametrize("status", [100, 180, 200, 401, 404, 486])
def test_fast_equals_general_for_backend_responses(neutral, status):
    proxy = make_proxy(neutral)
    (sent,) = proxy.from_client(request("INVITE", VIAS[0]), PHONE, PUBLIC)
    answer = make_response(
        parse(sent.data),
        status,
        to_tag="t",
        headers=[("Server", "Asterisk PBX 13"), ("User-Agent", "FPBX")],
    )
    data = answer.to_bytes()
    general = proxy.from_backend(data, BACKEND)
    before = proxy.fast_path
    fast = proxy.from_backend(data, BACKEND, peek(data))
    assert proxy.fast_path == before + 1
    assert general[0].flow == fast[0].flow == PHONE
    same_message(general[0].data, fast[0].data)
    assert b"Asterisk" not in fast[0].data and b"FPBX" not in fast[0].data


def test_backend_response_with_a_forged_token_is_dropped_either_way():
    proxy = make_proxy()
    (sent,) = proxy.from_client(request("INVITE", VIAS[0]), PHONE, PUBLIC)
    token = parse(sent.data).via.param("swf")
    data = (
        make_response(parse(sent.data), 200)
        .to_bytes()
        .replace(token.encode(), b"sw" + b"a" * (len(token) - 2))
    )
    assert proxy.from_backend(data, BACKEND, peek(data)) == proxy.from_backend(data, BACKEND)


TOKENS = st.sampled_from(["a", "Z9", "x-y", "tag", "lr", "q"])
PARAM = st.builds(
    lambda n, v: f";{n}" + (f"={v}" if v else ""), TOKENS, st.one_of(st.just(""), TOKENS)
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["REGISTER", "INVITE", "OPTIONS", "BYE", "NOTIFY", "REFER"]),
    st.sampled_from(["UDP", "TCP", "TLS"]),
    st.sampled_from(["192.168.1.20", "203.0.113.9", "[2001:db8::1]", "pc.example.com"]),
    st.sampled_from(["", ":5060", ":40000", ":65535"]),
    st.lists(PARAM, max_size=3).map("".join),
    st.sampled_from(["", ";rport", ";rport=9"]),
    st.sampled_from(["1", "70", "255", "256", "007"]),
    st.sampled_from(["", ";tag=x"]),
    st.sampled_from([PHONE, Peer("tcp", "203.0.113.9", 40001, conn=3)]),
)
def test_fast_equals_general_on_generated_requests(
    method, transport, host, port, params, rport, mf, to_tag, source
):
    via = f"SIP/2.0/{transport} {host}{port};branch=z9hG4bK{method}{params}{rport}"
    data = request(method, via, mf=mf, to_tag=to_tag)
    general, fast, _ = both_paths(make_proxy(), data, source=source)
    assert [type(a) for a in general] == [type(a) for a in fast]
    if isinstance(general[0], Send):
        assert general[0].flow == fast[0].flow
        same_message(general[0].data, fast[0].data)


def test_foreign_domains_are_left_to_the_general_path_which_drops_them():
    settings_ = ProxySettings(
        backend=BACKEND,
        internal={"udp": INSIDE},
        public={("udp", False): PUBLIC},
        domains=frozenset({"pbx.example.com"}),
    )
    proxy = StatelessProxy(settings_, FlowTokens(b"k" * 32))
    ok, ok_fast, took = both_paths(proxy, request("INVITE", VIAS[0]))
    assert took and ok[0].flow == ok_fast[0].flow
    aimed = request("INVITE", VIAS[0], ruri="sip:nm@203.0.113.1")
    general, fast, took = both_paths(proxy, aimed)
    assert not took and general == fast == [Drop("foreign-domain")]
