"""`sipwarden parse`'s view (``sip.describe.parse_view``): a message whose
only fault is one header value that does not parse is shown, with the
defect listed; framing and start-line errors still refuse it; everything
else is what ``validate()`` says, which does not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwarden.sip import Message, SipError, parse
from sipwarden.sip import errors as E
from sipwarden.sip.describe import HeaderFault, header_fault, message_dict, parse_view

from ..conftest import DATA, SCANNERS, TORTURE

SVWAR = (SCANNERS / "svwar_0.3.8_REGISTER_100.sip").read_bytes()
# SIPVicious 0.2.x sent REGISTERs with 'Contact: None' (a Python None printed;
# tests/data/scanners/README.md): the documented variant of the real svwar probe.
CONTACT_NONE = SVWAR.replace(b"Contact: sip:100@127.0.0.1", b"Contact: None")
CORPUS = sorted(
    p
    for p in [*TORTURE.rglob("*.dat"), *SCANNERS.rglob("*.sip"), *(DATA / "phones").glob("*.sip")]
    if p.is_file()
)


def refusal(data: bytes, **kw) -> str:
    with pytest.raises(SipError) as info:
        parse_view(data, **kw)
    return info.value.reason


def old_view(data: bytes) -> dict:
    """What `sipwarden parse` printed before: validate(), then the view."""
    return message_dict(parse(data).validate())


def test_a_contact_that_is_not_a_uri_is_shown_with_the_defect_listed():
    assert b"Contact: None" in CONTACT_NONE
    with pytest.raises(SipError):  # validate() still refuses it: the edge is unchanged
        parse(CONTACT_NONE).validate()
    view = parse_view(CONTACT_NONE)
    assert view["contact"] == {"error": E.BAD_URI, "detail": "no scheme in 'None'", "raw": ["None"]}
    assert view["defects"] == ["Contact: bad-uri"]
    assert {"name": "Contact", "value": "None"} in view["headers"]
    # the rest of the message is shown as it is
    assert view["method"] == "REGISTER" and view["user_agent"] == "friendly-scanner"
    assert view["from"]["params"]["tag"] == "31303001383436303032303731"
    assert view["via"][0]["branch"] == "z9hG4bK-1684310608"
    assert view["cseq"] == {"number": 1, "method": "REGISTER"}


def test_rfc4475_messages_with_one_bad_header_value_are_shown():
    """The torture messages whose only fault is one header value."""
    shown = {
        "regbadct.dat": "Contact: bad-name-addr",  # ?headers outside <>
        "quotbal.dat": "To: bad-name-addr",  # unterminated quoted display name
        "scalar02.dat": "CSeq: bad-cseq",  # CSeq over 2**32-1
        "scalarlg.dat": "CSeq: bad-cseq",  # the same in a response
    }
    for name, defect in shown.items():
        view = parse_view((TORTURE / name).read_bytes())
        assert defect in view["defects"], name
        key = defect.split(":")[0].lower()
        assert set(view[key]) == {"error", "detail", "raw"}, name


def test_header_fault_names_the_header():
    fault = header_fault(parse(CONTACT_NONE))
    assert fault == HeaderFault("Contact", E.BAD_URI, "no scheme in 'None'")
    assert header_fault(parse(SVWAR)) is None


def test_a_bad_content_length_still_refuses():
    assert refusal(CONTACT_NONE.replace(b"Content-Length: 0", b"Content-Length: abc")) == (
        E.BAD_CONTENT_LENGTH
    )
    assert refusal(SVWAR.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 0")) == (
        E.DUPLICATE_CONTENT_LENGTH
    )
    no_length = CONTACT_NONE.replace(b"Content-Length: 0\r\n", b"")
    assert refusal(no_length, stream=True) == E.MISSING_CONTENT_LENGTH


def test_a_broken_start_line_still_refuses():
    assert refusal(CONTACT_NONE.replace(b" SIP/2.0\r\n", b" SIP/3.0\r\n", 1)) == E.BAD_VERSION
    assert refusal(b"help\r\n" + CONTACT_NONE.split(b"\r\n", 1)[1]) == E.BAD_REQUEST_LINE
    # the Request-URI is the start line's: not a header value
    bad_uri = SVWAR.replace(b"REGISTER sip:127.0.0.1 SIP/2.0", b"REGISTER None SIP/2.0")
    assert refusal(bad_uri) == E.BAD_REQUEST_URI


def test_other_faults_next_to_a_bad_header_value_still_refuse():
    def with_contact_none(old: bytes, new: bytes) -> bytes:
        assert old in CONTACT_NONE
        return CONTACT_NONE.replace(old, new)

    call_id = b"Call-ID: 3136170989\r\n"
    assert refusal(with_contact_none(call_id, call_id * 2)) == "duplicate-call-id"
    assert refusal(with_contact_none(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE")) == (
        E.CSEQ_METHOD_MISMATCH
    )
    from_line = b'From: "100"<sip:100@127.0.0.1>;tag=31303001383436303032303731\r\n'
    assert refusal(with_contact_none(from_line, b"")) == E.MISSING_HEADER
    # two header values that do not parse: refused, as validate() refuses it
    assert refusal(with_contact_none(b"CSeq: 1 REGISTER", b"CSeq: x REGISTER")) == E.BAD_URI
    assert refusal((TORTURE / "badinv01.dat").read_bytes()) == E.BAD_VIA  # Via and Contact
    assert refusal((TORTURE / "baddn.dat").read_bytes()) == E.BAD_NAME_ADDR  # From and To


def test_a_clean_message_has_no_defects_and_the_view_it_had():
    view = parse_view(SVWAR)
    assert view["defects"] == []
    assert view == old_view(SVWAR)
    assert view["contact"][0]["uri"]["host"] == "127.0.0.1"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(DATA)))
def test_every_message_validate_judges_is_judged_the_same(path: Path):
    """A message validate() accepts has the view it had; one it refuses for
    anything but one header value is refused for the same reason."""
    data = path.read_bytes()
    try:
        before: dict | str = old_view(data)
    except SipError as exc:
        before = exc.reason
    try:
        after: dict | str = parse_view(data)
    except SipError as exc:
        after = exc.reason
    if isinstance(after, dict) and isinstance(before, str):
        faults = [d for d in after["defects"] if ": " in d]
        assert len(faults) == 1 and faults[0].endswith(f": {before}"), path.name
    else:
        assert after == before, path.name


def test_without_validation_the_view_is_the_bare_one():
    """`sipwarden parse --lenient`: frame and split only, as before."""
    for data in (SVWAR, CONTACT_NONE, (TORTURE / "badinv01.dat").read_bytes()):
        assert parse_view(data, validate=False) == message_dict(parse(data))
    tcp = (SCANNERS / "nmap_SIPOptions_tcp_probe.sip").read_bytes()
    assert parse_view(tcp, stream=True)["method"] == "OPTIONS"


ACROSS_HEADERS = {E.MISSING_HEADER, E.CSEQ_METHOD_MISMATCH, E.BAD_REQUEST_URI}


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(DATA)))
def test_one_bad_header_value_changes_nothing_else(path: Path):
    """The same corpus with a 'Contact: None' added: the checks validate()
    makes across headers still refuse, the defects it records are the same."""
    try:
        before: Message | str = parse(path.read_bytes()).validate()
    except SipError as exc:
        before = exc.reason
    try:
        msg = parse(path.read_bytes())
    except SipError:
        return  # a framing error: nothing to compare
    msg.add_header("Contact", "None")
    if isinstance(before, Message):
        assert header_fault(msg) == HeaderFault("Contact", E.BAD_URI, "no scheme in 'None'")
        assert message_dict(msg)["defects"] == message_dict(before)["defects"], path.name
        return
    try:
        fault = header_fault(msg)
    except SipError as exc:
        if before in ACROSS_HEADERS or before.startswith("duplicate-"):
            assert exc.reason == before, path.name
    else:  # shown: only when its one bad header value was a Contact already
        assert fault is not None and fault.header == "Contact", path.name
