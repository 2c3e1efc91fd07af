"""The stateless proxy core, message by message (no sockets).

The end-to-end behaviour against real phones and a real Kamailio is tested
in tests/edge; here every rule of the core is pinned down on its own.
"""

from __future__ import annotations

import gc

import pytest

from sipwarden.proxy import Drop, FlowTokens, Local, ProxySettings, Send, StatelessProxy
from sipwarden.proxy.base import BRANCH_PREFIX, TOKEN_PARAM
from sipwarden.proxy.core import _RECENT_FLOWS
from sipwarden.sip import make_response, parse
from sipwarden.values import Peer

from ..conftest import tracked_after_collection

BACKEND = Peer("udp", "127.0.0.1", 5080)
PUBLIC = Local("udp", "198.51.100.1", 5060)
PUBLIC_TCP = Local("tcp", "198.51.100.1", 5060)
INSIDE = Local("udp", "127.0.0.1", 5062)
PHONE = Peer("udp", "203.0.113.9", 40000)
PHONE_TCP = Peer("tcp", "203.0.113.9", 40001, conn=7)


@pytest.fixture
def proxy():
    settings = ProxySettings(
        backend=BACKEND,
        internal={"udp": INSIDE},
        public={("udp", False): PUBLIC, ("tcp", False): PUBLIC_TCP},
        server_header="",
    )
    return StatelessProxy(settings, FlowTokens(b"k" * 32))


def request(
    method="INVITE",
    *,
    via="SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKabc;rport",
    extra="",
    mf="70",
    to_tag="",
):
    lines = [
        f"{method} sip:200@pbx.example.com SIP/2.0",
        f"Via: {via}",
        f"Max-Forwards: {mf}" if mf is not None else None,
        "From: <sip:100@pbx.example.com>;tag=f1",
        f"To: <sip:200@pbx.example.com>{to_tag}",
        "Call-ID: call-1",
        f"CSeq: 1 {method}",
        "Contact: <sip:100@192.168.1.20:5060>",
        "User-Agent: Yealink SIP-T46S",
        *([extra] if extra else []),
        "Content-Length: 0",
    ]
    return ("\r\n".join(x for x in lines if x is not None) + "\r\n\r\n").encode()


def sent(actions):
    assert len(actions) == 1 and isinstance(actions[0], Send), actions
    return actions[0].flow, parse(actions[0].data).validate()


def test_request_goes_to_backend_with_our_via_and_nat_params(proxy):
    flow, msg = sent(proxy.from_client(request(), PHONE, PUBLIC))
    assert flow == BACKEND
    ours, client = msg.vias[0], msg.vias[1]
    assert ours.host == "127.0.0.1" and ours.port == 5062
    assert ours.branch.startswith(BRANCH_PREFIX)
    assert proxy.tokens.decode(ours.param(TOKEN_PARAM)) == PHONE  # rport: answer to the source port
    assert client.received == "203.0.113.9" and client.rport == "40000"
    assert msg.max_forwards == 69
    assert len(msg.record_routes) == 2  # INVITE: double record-route


def test_branch_is_deterministic_so_cancel_matches(proxy):
    _, invite = sent(proxy.from_client(request("INVITE"), PHONE, PUBLIC))
    _, again = sent(proxy.from_client(request("INVITE"), PHONE, PUBLIC))
    _, cancel = sent(proxy.from_client(request("CANCEL"), PHONE, PUBLIC))
    assert invite.via.branch == again.via.branch == cancel.via.branch
    _, other = sent(
        proxy.from_client(
            request(via="SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKxyz"), PHONE, PUBLIC
        )
    )
    assert other.via.branch != invite.via.branch


def test_rfc2543_branchless_requests_get_a_stable_branch(proxy):
    via = "SIP/2.0/UDP 192.168.1.20:5060"
    _, a = sent(proxy.from_client(request(via=via), PHONE, PUBLIC))
    _, b = sent(proxy.from_client(request(via=via), PHONE, PUBLIC))
    assert a.via.branch == b.via.branch and a.via.branch.startswith(BRANCH_PREFIX)


def test_without_rport_the_answer_goes_to_the_via_port(proxy):
    _, msg = sent(
        proxy.from_client(
            request(via="SIP/2.0/UDP 192.168.1.20:5070;branch=z9hG4bKq"), PHONE, PUBLIC
        )
    )
    assert proxy.tokens.decode(msg.via.param(TOKEN_PARAM)) == Peer("udp", "203.0.113.9", 5070)
    assert msg.vias[1].rport is None and msg.vias[1].received == "203.0.113.9"


def test_max_forwards_zero_gets_483_and_missing_gets_a_default(proxy):
    flow, answer = sent(proxy.from_client(request(mf="0"), PHONE, PUBLIC))
    assert flow == PHONE and answer.status == 483
    assert proxy.from_client(request("ACK", mf="0"), PHONE, PUBLIC) == [Drop("too-many-hops")]
    _, msg = sent(proxy.from_client(request(mf=None), PHONE, PUBLIC))
    assert msg.max_forwards == 69


def test_register_gets_a_path_with_the_flow(proxy):
    _, msg = sent(proxy.from_client(request("REGISTER"), PHONE_TCP, PUBLIC_TCP))
    (path,) = msg.paths
    assert path.uri.param("lr") == "" and (path.uri.host, path.uri.port) == ("127.0.0.1", 5062)
    assert proxy.tokens.decode(path.uri.user) == PHONE_TCP
    assert not msg.record_routes


def test_backend_response_is_popped_neutralised_and_routed_by_token(proxy):
    _, fwd = sent(proxy.from_client(request(), PHONE_TCP, PUBLIC_TCP))
    answer = make_response(
        fwd, 200, headers=[("Server", "Asterisk PBX 13.1"), ("User-Agent", "FPBX")]
    )
    flow, out = sent(proxy.from_backend(answer.to_bytes(), BACKEND))
    assert flow == PHONE_TCP
    assert [v.branch for v in out.vias] == ["z9hG4bKabc"]
    assert "server" not in out and "user-agent" not in out
    assert (
        b"Asterisk" not in out.to_bytes()
        and b"127.0.0.1:5062" not in out.to_bytes().split(b"Record-Route")[0]
    )


def test_backend_response_with_forged_token_or_foreign_via_is_dropped(proxy):
    _, fwd = sent(proxy.from_client(request(), PHONE, PUBLIC))
    answer = make_response(fwd, 200).to_bytes()
    token = fwd.via.param(TOKEN_PARAM)
    forged = answer.replace(
        token.encode(), proxy.tokens.encode(Peer("udp", "192.0.2.66", 5060))[:-2].encode() + b"aa"
    )
    assert proxy.from_backend(forged, BACKEND) == [Drop("response-bad-token")]
    foreign = make_response(parse(request()), 200).to_bytes()
    assert proxy.from_backend(foreign, BACKEND) == [Drop("response-not-ours")]


def test_backend_request_is_routed_only_through_our_route(proxy):
    _, reg = sent(proxy.from_client(request("REGISTER"), PHONE_TCP, PUBLIC_TCP))
    path = reg.get("Path")
    invite = request(
        "INVITE", via="SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKpbx1", extra=f"Route: {path}"
    ).replace(b"User-Agent: Yealink SIP-T46S", b"User-Agent: Asterisk PBX")
    flow, out = sent(proxy.from_backend(invite, BACKEND))
    assert flow == PHONE_TCP
    assert "route" not in out
    assert out.via.transport == "TCP" and (out.via.host, out.via.port) == ("198.51.100.1", 5060)
    assert "user-agent" not in out
    # the phone sees one Record-Route: ours, with the route set sealed in it
    (rr,) = out.record_routes
    assert (rr.uri.host, rr.uri.port) == ("198.51.100.1", 5060) and rr.uri.param("swr")
    assert b"127.0.0.1" not in out.to_bytes()
    # the phone answers; the answer goes back to the backend with our Via
    # popped and the full route set restored
    answer = make_response(
        out, 180, to_tag="t9", headers=[("Record-Route", out.get("record-route"))]
    )
    flow, back = sent(proxy.from_client(answer.to_bytes(), PHONE_TCP, PUBLIC_TCP))
    assert flow == BACKEND and back.via.branch == "z9hG4bKpbx1"
    assert [(r.uri.host, r.uri.port) for r in back.record_routes] == [
        ("198.51.100.1", 5060),
        ("127.0.0.1", 5062),
    ]


def test_no_open_relay(proxy):
    # a backend request without our Route goes nowhere
    stray = request("INVITE", via="SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKpbx2")
    assert proxy.from_backend(stray, BACKEND) == [Drop("backend-request-without-route")]
    # a forged route token goes nowhere
    forged = request(
        "INVITE",
        via="SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKpbx3",
        extra="Route: <sip:swaaaaaaaaaaaaaaaaaaaaaaaaaaaa@127.0.0.1:5062;lr>",
    )
    assert proxy.from_backend(forged, BACKEND) == [Drop("backend-request-without-route")]
    # a client request with a Route elsewhere is not handed to the PBX to relay
    elsewhere = request(extra="Route: <sip:victim.example.net;lr>")
    assert proxy.from_client(elsewhere, PHONE, PUBLIC) == [Drop("foreign-route")]


def test_in_dialog_request_from_phone_drops_our_routes(proxy):
    _, fwd = sent(proxy.from_client(request(), PHONE, PUBLIC))
    routes = ", ".join(str(r) for r in reversed(fwd.record_routes))
    bye = request("BYE", to_tag=";tag=t1", extra=f"Route: {routes}")
    flow, out = sent(proxy.from_client(bye, PHONE, PUBLIC))
    assert flow == BACKEND and "route" not in out and not out.record_routes


def test_malformed_is_dropped_and_counted(proxy):
    assert proxy.from_client(b"INVITE sip:x SIP/2.0\r\n\r\n", PHONE, PUBLIC) == [
        Drop("malformed:missing-header")
    ]
    assert proxy.drops["malformed:missing-header"] == 1
    assert proxy.from_client(b"\x00\x01garbage", PHONE, PUBLIC)[0].reason.startswith("malformed:")


def test_flow_tokens_roundtrip_and_reject_tampering():
    tokens = FlowTokens(b"s" * 32)
    for flow in (Peer("udp", "203.0.113.9", 5060), Peer("tls", "2001:db8::7", 5061, conn=123456)):
        assert tokens.decode(tokens.encode(flow)) == flow
    token = tokens.encode(Peer("udp", "203.0.113.9", 5060))
    assert tokens.decode(token[:-1] + ("a" if token[-1] != "a" else "b")) is None
    assert FlowTokens(b"t" * 32).decode(token) is None
    for junk in (None, "", "sw", "sw!!", "x" * 200, "swzzzz"):
        assert tokens.decode(junk) is None


def test_in_dialog_routes_through_the_pbx_are_kept(proxy):
    # the PBX record-routed too: after our entries comes the PBX's, then ours again
    ack = request(
        "ACK",
        to_tag=";tag=t1",
        extra="Route: <sip:127.0.0.1:5062;lr>, <sip:127.0.0.1:5080;lr>, <sip:192.0.2.99;lr>",
    )
    flow, out = sent(proxy.from_client(ack, PHONE, PUBLIC))
    assert flow == BACKEND
    assert [r.uri.host for r in out.routes] == ["127.0.0.1", "192.0.2.99"]


def test_initial_requests_for_other_domains_are_dropped():
    settings = ProxySettings(
        backend=BACKEND,
        internal={"udp": INSIDE},
        public={("udp", False): PUBLIC},
        domains=frozenset({"pbx.example.com", "198.51.100.1"}),
    )
    proxy = StatelessProxy(settings, FlowTokens(b"k" * 32))
    assert isinstance(proxy.from_client(request(), PHONE, PUBLIC)[0], Send)
    aimed = request().replace(
        b"INVITE sip:200@pbx.example.com", b"INVITE sip:200@victim.example.net"
    )
    assert proxy.from_client(aimed, PHONE, PUBLIC) == [Drop("foreign-domain")]
    bare = request().replace(b"INVITE sip:200@pbx.example.com", b"INVITE sip:nm@203.0.113.1")
    assert proxy.from_client(bare, PHONE, PUBLIC) == [Drop("foreign-domain")]
    # in-dialog requests name the remote target, not a domain: routed as usual
    bye = request("BYE", to_tag=";tag=t1").replace(
        b"BYE sip:200@pbx.example.com", b"BYE sip:200@192.168.1.7:5060"
    )
    assert isinstance(proxy.from_client(bye, PHONE, PUBLIC)[0], Send)


def test_the_pbx_route_is_hidden_from_the_caller_and_restored(proxy):
    """A record-routing PBX: the caller's 200 carries one sealed Record-Route;
    its BYE, routed by that one entry, reaches the PBX with the PBX's own
    Route back in place. A forged seal goes nowhere."""
    _, fwd = sent(proxy.from_client(request(), PHONE, PUBLIC))
    pbx_rr = "<sip:127.0.0.1:5080;lr;ftag=f1>"
    answer = make_response(
        fwd,
        200,
        to_tag="t2",
        headers=[
            ("Record-Route", pbx_rr),
            *(("Record-Route", v) for v in fwd.get_all("record-route")),
        ],
    )
    flow, ok = sent(proxy.from_backend(answer.to_bytes(), BACKEND))
    assert flow == PHONE
    (rr,) = ok.record_routes
    assert b"5080" not in ok.to_bytes() and b"5062" not in ok.to_bytes()
    bye = request("BYE", to_tag=";tag=t2", extra=f"Route: {rr}")
    flow, out = sent(proxy.from_client(bye, PHONE, PUBLIC))
    assert flow == BACKEND
    assert [str(r) for r in out.routes] == [pbx_rr]  # ours popped, the PBX's restored
    seal = rr.uri.param("swr")
    forged = bye.replace(seal.encode(), seal[:-3].encode() + b"AAA")
    assert proxy.from_client(forged, PHONE, PUBLIC) == [Drop("forged-route-seal")]


def test_the_pbx_contact_is_hidden_and_restored(proxy):
    """A B2BUA PBX answers with its own Contact: the phone gets the edge's,
    with the original sealed inside; requests aimed at it reach the original."""
    _, fwd = sent(proxy.from_client(request(), PHONE, PUBLIC))
    answer = make_response(
        fwd, 200, to_tag="t3", headers=[("Contact", "<sip:pbx@127.0.0.1:5080>;expires=60")]
    )
    flow, ok = sent(proxy.from_backend(answer.to_bytes(), BACKEND))
    (contact,) = ok.contacts
    assert (contact.uri.host, contact.uri.port) == ("198.51.100.1", 5060) and contact.expires == 60
    assert b"5080" not in ok.to_bytes()
    bye = request("BYE", to_tag=";tag=t3").replace(
        b"BYE sip:200@pbx.example.com", f"BYE {contact.uri.raw}".encode()
    )
    flow, out = sent(proxy.from_client(bye, PHONE, PUBLIC))
    assert flow == BACKEND and out.uri_text == "sip:pbx@127.0.0.1:5080"
    forged = bye.replace(contact.uri.param("swr").encode(), b"AAAA")
    assert proxy.from_client(forged, PHONE, PUBLIC) == [Drop("forged-contact-seal")]
    # the bindings in an answer to REGISTER are the phone's own: untouched
    _, reg = sent(proxy.from_client(request("REGISTER"), PHONE, PUBLIC))
    bound = make_response(
        reg, 200, headers=[("Contact", "<sip:100@192.168.1.20:5060>;expires=600")]
    )
    _, ok = sent(proxy.from_backend(bound.to_bytes(), BACKEND))
    assert ok.get("contact") == "<sip:100@192.168.1.20:5060>;expires=600"


def test_the_flows_tokens_leave_nothing_per_flow_for_the_collector_to_walk(proxy, monkeypatch):
    """The flows whose tokens are remembered are strings, but for the last
    few thousand (Peers, for the hot path): 20,000 spoofed flows add at most
    that bounded few to what a full collection walks (a Peer per flow, and a
    dict given a fresh tuple per flow, added 20,000 and more), and the
    tables of strings are never tracked."""
    tokens = []

    def flows(first: int, count: int) -> None:
        for i in range(first, first + count):
            flow = Peer("udp", f"198.18.{i >> 8 & 255}.{i & 255}", 5060 + (i >> 16))
            token = proxy.token_for(flow)
            assert proxy.token_for(flow) == token  # remembered
            assert proxy.flow_of(token) == flow
            tokens.append(token)

    flows(0, 100)
    before = tracked_after_collection()
    flows(100, 20_000)
    assert tracked_after_collection() - before < 2 * _RECENT_FLOWS + 100
    assert len(proxy._token_of) <= _RECENT_FLOWS and len(proxy._flow_of) <= _RECENT_FLOWS
    assert not gc.is_tracked(proxy._token_of_text) and not gc.is_tracked(proxy._text_of_token)
    # a flow no longer among the latest is made back from its text, not the HMAC
    monkeypatch.setattr(proxy, "tokens", None)  # (would fail if asked)
    assert proxy.flow_of(tokens[150]) == Peer("udp", "198.18.0.150", 5060)


def test_a_token_we_made_is_read_back_without_the_hmac(proxy, monkeypatch):
    """A spoofed flood is all new flows: the answer to each must not pay a
    second HMAC (and base32) to find the flow its own token names."""
    made = [Peer("udp", f"198.18.7.{i}", 5060) for i in range(1, 200)]
    tokens = [proxy.token_for(flow) for flow in made]
    proxy._flow_of.clear()  # (out of the latest few thousand: only the texts are left)
    monkeypatch.setattr(proxy.tokens, "decode", lambda token: pytest.fail("decoded"))
    assert [proxy.flow_of(token) for token in tokens] == made
