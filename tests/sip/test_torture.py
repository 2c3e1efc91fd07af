"""RFC 4475 and RFC 5118 torture messages: each gets the outcome its RFC asks for.

The table says what sipwarden does with each file. Where the RFC allows
either rejecting or lenient acceptance ("may reject", "lenient OK"), the
choice is stated and asserted, and every acceptance is asserted on values.
"""

from __future__ import annotations

import pytest

from sipwarden.sip import SipError, parse, parse_via
from sipwarden.sip import errors as E

from ..conftest import TORTURE


def load(name: str) -> bytes:
    return (TORTURE / name).read_bytes()


def accept(name: str):
    msg = parse(load(name))
    msg.validate()
    return msg


def reject(name: str) -> str:
    """Parse and validate; return the reason of the rejection."""
    with pytest.raises(SipError) as info:
        parse(load(name)).validate()
    return info.value.reason


# --- RFC 4475 §3.1.2 invalid messages and §3.3 APP-invalid: rejected, with the reason.
REJECTED = {
    "badinv01.dat": E.BAD_VIA,  # Via ";;,;,," (empty values and params)
    "clerr.dat": E.CONTENT_LENGTH_MISMATCH,  # CL 9999 on a 154-byte body (UDP: discard)
    "ncl.dat": E.BAD_CONTENT_LENGTH,  # CL -999 never becomes a number
    "scalar02.dat": E.BAD_CSEQ,  # CSeq over 2**32-1
    "scalarlg.dat": E.BAD_CSEQ,  # response with CSeq over 2**32-1
    "quotbal.dat": E.BAD_NAME_ADDR,  # unterminated quoted display name
    "ltgtruri.dat": E.BAD_REQUEST_URI,  # <sip:...> as Request-URI (strict: a scanner-ish error)
    "lwsruri.dat": E.BAD_REQUEST_LINE,  # LWS inside the Request-URI
    "escruri.dat": E.BAD_REQUEST_URI,  # escaped headers in the Request-URI, never turned into headers
    "regbadct.dat": E.BAD_NAME_ADDR,  # Contact with ?headers outside <>
    "baddn.dat": E.BAD_NAME_ADDR,  # unquoted "Bell, Alexander": a proxy must not forward it
    "badvers.dat": E.BAD_VERSION,  # SIP/7.0 (505)
    "mismatch01.dat": E.CSEQ_METHOD_MISMATCH,
    "mismatch02.dat": E.CSEQ_METHOD_MISMATCH,
    "bigcode.dat": E.BAD_STATUS_LINE,  # status 4294967301
    "insuf.dat": E.MISSING_HEADER,  # no Call-ID, From, To
    "multi01.dat": "duplicate-call-id",
    "mcl01.dat": E.DUPLICATE_CONTENT_LENGTH,  # two Content-Lengths: a framing error
}

# --- accepted (VALID, APP-valid, TXN, COMPAT, and the lenient choices)
ACCEPTED = [
    "wsinv.dat",
    "intmeth.dat",
    "esc01.dat",
    "escnull.dat",
    "esc02.dat",
    "lwsdisp.dat",
    "longreq.dat",
    "dblreq.dat",
    "semiuri.dat",
    "transports.dat",
    "mpart01.dat",
    "unreason.dat",
    "noreason.dat",
    "badbranch.dat",
    "unkscm.dat",
    "novelsc.dat",
    "unksm2.dat",
    "bext01.dat",
    "invut.dat",
    "regaut01.dat",
    "bcast.dat",
    "zeromf.dat",
    "cparam01.dat",
    "cparam02.dat",
    "regescrt.dat",
    "sdp01.dat",
    "inv2543.dat",
    # lenient choices the RFC permits ("may reject" / "lenient OK"):
    "lwsstart.dat",  # extra spaces in the request line: accepted, defect recorded
    "trws.dat",  # trailing spaces after SIP/2.0: accepted, defect recorded
    "baddate.dat",  # Date with EST: Date is never interpreted, kept as written
    "badaspec.dat",  # spaces inside < >: accepted, defect recorded
]


def test_every_rfc4475_file_is_classified():
    files = {p.name for p in TORTURE.glob("*.dat")}
    assert files == set(REJECTED) | set(ACCEPTED)


@pytest.mark.parametrize("name,reason", sorted(REJECTED.items()))
def test_rejected_with_reason(name, reason):
    assert reject(name) == reason


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted(name):
    msg = accept(name)
    assert msg.call_id
    assert msg.cseq is not None
    assert msg.vias


def test_framing_rejections_happen_at_parse_not_later():
    for name in ("mcl01.dat", "ncl.dat", "clerr.dat"):
        with pytest.raises(SipError):
            parse(load(name))


def test_wsinv_values():
    m = accept("wsinv.dat")
    assert m.method == "INVITE"
    assert m.uri.user == "vivekg" and m.uri.params == (("unknownparam", None),)
    assert m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.cseq.number == 9 and m.cseq.method == "INVITE"
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.get("s") == ""
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert contact.q == 0.33
    assert m.routes[0].uri.params[0] == ("lr", None)
    assert len(m.body) == 150


def test_intmeth_values():
    m = accept("intmeth.dat")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.param("fromparam''~+*_!.-%") == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert m.max_forwards == 255


def test_esc01_percent_escapes_are_the_characters():
    m = accept("esc01.dat")
    assert m.uri.user == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert m.to.uri.user == "user"
    assert m.from_.uri.user == "I have spaces"
    (c,) = m.contacts
    assert c.uri.user == "caller"
    assert c.uri.params == (("lr", None), ("name", "value%41"))


def test_escnull_two_distinct_contacts():
    m = accept("escnull.dat")
    users = [c.uri.user for c in m.contacts]
    assert users == ["\x00", "\x00\x00"]
    assert m.to.uri.user == "null-\x00-null"


def test_esc02_method_is_not_register():
    m = accept("esc02.dat")
    assert m.method == "RE%47IST%45R" and m.method != "REGISTER"
    assert m.from_.display_name == "%Z%45"
    assert m.via.branch == "z9hG4bK209%fzsnel234"
    # C%6Fntact is an unknown header, not a third Contact
    assert [c.uri.user for c in m.contacts] == ["alias1", "alias3"]
    assert m.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_token_display_name_without_space():
    m = accept("lwsdisp.dat")
    assert m.from_.display_name == "caller"
    assert m.from_.uri.user == "caller"


def test_longreq_34_vias_in_odd_spellings():
    m = accept("longreq.dat")
    assert len(m.vias) == 34
    assert m.vias[0].host == "sip33.example.com"
    assert len(m.to.display_name) > 80
    assert len(m.to_bytes()) == len(load("longreq.dat"))


def test_dblreq_one_register_trailing_bytes_ignored():
    data = load("dblreq.dat")
    m = accept("dblreq.dat")
    assert m.method == "REGISTER"
    assert m.body == b""
    assert E.D_TRAILING_BYTES in m.defects
    assert b"INVITE" in data and b"INVITE" not in m.to_bytes()


def test_semiuri_user_contains_semicolon():
    m = accept("semiuri.dat")
    assert m.uri.user == "user;par=u@example.net"
    assert m.uri.host == "example.com"
    assert m.uri.params == ()
    assert m.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_extension_token():
    m = accept("transports.dat")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body_framed_by_content_length():
    data = load("mpart01.dat")
    m = accept("mpart01.dat")
    assert len(m.body) == 553 == m.content_length
    assert m.body == data[data.index(b"\r\n\r\n") + 4 :][:553]  # binary octets kept as they are


def test_response_reason_phrases():
    m = accept("unreason.dat")
    assert m.status == 200
    assert m.reason.startswith("= 2**3 * 5**2")
    assert "\u0441\u0442\u043e" in m.reason  # UTF-8 decoded
    m = accept("noreason.dat")
    assert m.status == 100 and m.reason == ""


def test_badbranch_cookie_only_is_flagged():
    m = accept("badbranch.dat")
    assert m.via.branch == "z9hG4bK"
    assert E.D_BRANCH_COOKIE_ONLY in m.defects


def test_unknown_schemes_are_opaque():
    m = accept("unkscm.dat")
    assert m.uri.scheme == "nobodyknowsthisscheme"
    assert m.uri.opaque == "totallyopaquecontent"
    assert not m.uri.is_sip
    m = accept("novelsc.dat")
    assert m.uri.scheme == "soap.beep"
    m = accept("unksm2.dat")
    assert m.to.uri.scheme == "isbn"
    assert m.from_.uri.scheme == "http"
    assert m.contacts[0].uri.scheme == "name"


def test_bext01_and_invut_parse():
    m = accept("bext01.dat")
    assert m.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.get_all("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    m = accept("invut.dat")
    assert m.get("Content-Type") == "application/unknownformat"


def test_regaut01_unknown_auth_scheme():
    m = accept("regaut01.dat")
    assert m.authorization.scheme == "NoOneKnowsThisScheme"
    assert not m.authorization.is_digest
    assert m.authorization.get("opaque-data") == "here"


def test_bcast_second_via_broadcast():
    m = accept("bcast.dat")
    assert m.vias[1].host == "255.255.255.255"


def test_zeromf():
    assert accept("zeromf.dat").max_forwards == 0


def test_contact_params_inside_and_outside_brackets():
    (c,) = accept("cparam01.dat").contacts
    assert c.params == (("unknownparam", None),) and c.uri.params == ()
    (c,) = accept("cparam02.dat").contacts
    assert c.params == () and c.uri.params == (("unknownparam", None),)


def test_regescrt_escaped_route_kept_in_binding():
    (c,) = accept("regescrt.dat").contacts
    assert c.uri.headers == (("Route", "<sip:sip.example.com>"),)


def test_sdp01_accept_header():
    m = accept("sdp01.dat")
    assert m.get("Accept") == "text/nobodyKnowsThis"
    assert m.body.startswith(b"v=0")


def test_inv2543_backwards_compatible():
    data = load("inv2543.dat")
    m = accept("inv2543.dat")
    assert m.via.branch is None
    assert m.from_.tag is None
    assert m.max_forwards is None
    assert m.content_length is None
    # no Content-Length on UDP: the body runs to the end of the datagram
    assert m.body == data[data.index(b"\r\n\r\n") + 4 :]
    assert {E.D_NO_BRANCH, E.D_NO_FROM_TAG, E.D_NO_MAX_FORWARDS, E.D_NO_CONTENT_LENGTH} <= set(
        m.defects
    )


def test_lenient_choices_record_defects():
    assert E.D_START_LINE_WHITESPACE in accept("lwsstart.dat").defects
    trws = accept("trws.dat")
    assert E.D_START_LINE_WHITESPACE in trws.defects and trws.uri.user == "remote-target"
    assert accept("baddate.dat").get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    m = accept("badaspec.dat")
    assert E.D_LWS_IN_ADDR_SPEC in m.defects
    assert m.to.uri.user == "t.watson"
    assert m.from_.display_name == "Bell, Alexander"


def test_baddn_without_header_terminator_is_framed_but_rejected():
    m = parse(load("baddn.dat"))
    assert E.D_NO_HEADER_TERMINATOR in m.defects
    with pytest.raises(SipError) as info:
        m.validate()
    assert info.value.reason == E.BAD_NAME_ADDR


def test_extra_test_dat_is_malformed():
    with pytest.raises(SipError):
        parse(load("extra/test.dat")).validate()


# --- RFC 5118 (IPv6), wire copies -------------------------------------------------


def v6(name: str):
    msg = parse((TORTURE / "rfc5118-wire" / name).read_bytes())
    msg.validate()
    return msg


def test_rfc5118_only_ipv6_bad_is_rejected():
    for path in sorted((TORTURE / "rfc5118-wire").iterdir()):
        if path.name == "ipv6-bad":
            with pytest.raises(SipError) as info:
                v6(path.name)
            assert info.value.reason == E.BAD_REQUEST_URI
        else:
            v6(path.name)


def test_rfc5118_values():
    m = v6("ipv6-good")
    assert m.uri.host == "[2001:db8::10]" and m.uri.port is None
    assert m.uri.host_bare == "2001:db8::10"
    assert m.via.host == "[2001:db8::9:1]"
    m = v6("port-ambiguous")
    assert m.uri.host == "[2001:db8::10:5070]" and m.uri.port is None
    m = v6("port-unambiguous")
    assert m.uri.host == "[2001:db8::10]" and m.uri.port == 5070
    assert v6("via-received-param-with-delim").via.received == "[2001:db8::9:255]"
    assert v6("via-received-param-no-delim").via.received == "2001:db8::9:255"
    m = v6("mult-ip-in-header")
    assert [(v.host, v.port) for v in m.vias] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    assert m.vias[2].received == "192.0.2.200"
    m = v6("ipv4-mapped-ipv6")
    assert m.via.host == "[::ffff:192.0.2.10]" and m.via.port == 19823
    assert v6("ipv6-bug-abnf-3-colons").uri.host == "[2001:db8:::192.0.2.1]"
    assert v6("ipv6-correct-abnf-2-colons").uri.host == "[2001:db8::192.0.2.1]"
    m = v6("ipv6-in-sdp")
    assert b"c=IN IP6 2001:db8::20" in m.body and len(m.body) == m.content_length


# --- regressions from the property and fuzz runs ------------------------------------


def test_long_whitespace_in_via_is_linear():
    # a backtracking sent-by pattern made this quadratic (about a minute per 64 KB)
    via = "SIP/2.0/UDP a" + " " * 60_000 + "b"
    with pytest.raises(SipError) as info:
        parse_via(via)
    assert info.value.reason == E.BAD_VIA


def test_version_must_be_ascii():
    for line in (
        b"\xc5\xbfip/2.0 200 OK",
        b"OPTIONS sip:a SI\xc4\xb1P/2.0",
    ):  # 'ſip', 'SıP' upper() to SIP
        with pytest.raises(SipError) as info:
            parse(line + b"\r\nl: 0\r\n\r\n")
        assert info.value.reason == E.BAD_VERSION


def test_no_line_break_inside_the_start_line():
    with pytest.raises(SipError) as info:
        parse(b"SIP/2.0 200 OK\nX: y\r\nl: 0\r\n\r\n")
    assert info.value.reason == E.BAD_START_LINE


def test_bare_lf_framing_wins_over_a_later_crlfcrlf():
    m = parse(b"SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nl: 6\n\n\r\n\r\nab")
    assert m.reason == "OK" and m.via.branch == "z9hG4bK1" and m.body == b"\r\n\r\nab"
    assert E.D_BARE_LF in m.defects


def test_zero_padded_numbers():
    m = parse(
        b"OPTIONS sip:a SIP/2.0\r\nCSeq: 00000000001 OPTIONS\r\nMax-Forwards: 000000000070\r\nl: 0\r\n\r\n"
    )
    assert m.cseq.number == 1 and m.max_forwards == 70


def test_start_line_error_is_reported_before_header_errors():
    with pytest.raises(SipError) as info:
        parse(b"X\r\nl: z\r\n\r\n")
    assert info.value.reason == E.BAD_REQUEST_LINE
