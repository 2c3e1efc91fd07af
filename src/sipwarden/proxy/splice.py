"""The proxy's fast path: edit the datagram in place instead of re-building it.

For the two messages that make up nearly all traffic through an edge -- a
client's request without Route headers, and the backend's response to it --
the edits are few and local: a Via line (and Path or Record-Route lines)
inserted after the start line, ``received``/``rport`` appended to the
client's Via, Max-Forwards decremented; or the top Via line cut and the
Server/User-Agent lines replaced. The C scanner already knows where those
values sit (``Peek.layout``), so the new message is a join of slices.

This path only takes messages whose every touched part has the simple shape
(a plain top Via value, plain Max-Forwards, no repeated single headers, no
Route, From/To/CSeq/Request-URI as the fast parsers read them) and hands
everything else, with its full validation, to ``StatelessProxy``'s general
path. What it checks is what the proxy needs: unlike the general path, it
does not validate headers it does not touch (a malformed Contact, say); the
sanity of those is the policy pipeline's job (issue 4). On every message it
takes, the result is the one the general path gives (tests/proxy/test_splice.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sip import Peek, SipError
from ..sip.address import name_addr_parts
from ..sip.fields import ViaParts, via_parts
from ..sip.peek import (
    CALL_ID,
    CONTACT,
    CSEQ,
    FROM,
    MAX_FORWARDS,
    RECORD_ROUTE,
    ROUTE,
    RURI,
    SERVER,
    TO,
    USER_AGENT,
    VIA,
)
from ..sip.uri import simple_params
from ..values import Peer
from .base import (
    AUTH_FLAG,
    BRANCH_PREFIX,
    DIALOG_CREATING,
    SEAL_PARAM,
    TOKEN_PARAM,
    Action,
    Local,
    Send,
    branch_of,
    flow_words,
)

if TYPE_CHECKING:
    from .core import StatelessProxy

# single-valued headers that must not repeat for the fast path
_MUST_NOT_REPEAT = (
    (1 << CALL_ID) | (1 << FROM) | (1 << TO) | (1 << CSEQ) | (1 << MAX_FORWARDS) | (1 << VIA)
)


def client_request(
    proxy: StatelessProxy, data: bytes, view: Peek, source: Peer, local: Local
) -> list[Action] | None:
    """The fast path for a client's request; None when it does not apply."""

    layout = view.layout
    method = view.method
    if layout is None or method is None:
        return None
    line_end, repeated, via0, via1, mf0, mf1 = layout[:6]
    values = view.raw_values
    if repeated & _MUST_NOT_REPEAT or values[ROUTE] is not None or via0 < 0 or mf0 < 0:
        return None
    if values[CALL_ID] is None or values[FROM] is None or values[TO] is None:
        return None
    mf_text = values[MAX_FORWARDS]
    assert mf_text is not None
    if (
        not (mf_text.isascii() and mf_text.isdigit() and 0 < len(mf_text) <= 3)
        or mf_text.strip("0") == ""
    ):
        return None  # (zero: the general path answers 483)
    top = _top_via(values[VIA])
    if top is None:
        return None
    via_text, parts = top
    via1 = via0 + len(via_text)  # (the line may go on with more Via values)
    if parts.received is not None:  # an existing received=: general path
        return None
    _, host, port, _, branch, rport, _ = parts
    to_parts = view.addr_parts(TO)
    if to_parts is None or view.addr_parts(FROM) is None:
        return None
    try:
        if view.cseq_method != method:
            return None
    except SipError:  # a broken CSeq: the general path drops it, and says why
        return None
    # a Request-URI the general path would refuse must not pass: a bare
    # addr-spec of the simple shape is fine as it is, anything else is parsed
    if SEAL_PARAM in (view.uri_text or ""):
        return None  # aimed at a Contact we hid: the general path restores it
    ruri = view.addr_parts(RURI)
    if ruri is not None and ruri.header_params == "" and ruri.uri_text == view.uri_text:
        ruri_host = ruri.host.strip("[]").lower()
    else:
        try:
            ruri_host = view.uri.host_bare or ""
        except SipError:
            return None
    domains = proxy.settings.domains
    if domains and to_parts.tag is None and ruri_host not in domains:
        return None  # the general path drops it, and counts why

    # where the answer goes (RFC 3261 §18.2.2, RFC 3581)
    if source.is_stream or rport is not None:
        reply = source
    else:
        reply = Peer("udp", source.host, port or 5060)
    # the client's Via: rport filled in, received added
    new_via = via_text
    if rport == "":
        at = _flag_at(via_text, ";rport")
        if at < 0:
            return None
        new_via = f"{via_text[:at]};rport={source.port}{via_text[at + 6 :]}"
    if rport == "" or host.strip("[]").lower() != source.host:
        new_via += f";received={source.host}"

    if not (branch and branch.startswith("z9hG4bK") and len(branch) > 7):
        return None  # RFC 2543 transactions: the general path hashes more fields
    token = proxy.token_for(reply)
    key = branch_of(branch, f"{host}:{port}" if port is not None else host, *flow_words(source))
    flag = f";{AUTH_FLAG}" if view.has_credentials else ""
    lines = f"{proxy.via_prefix}{key};{TOKEN_PARAM}={token}{flag}\r\n"
    if method == "REGISTER":
        lines += proxy.path_line(token)
    elif method in DIALOG_CREATING and to_parts.tag is None:
        inside = proxy.settings.internal[proxy.settings.backend.transport]
        entries = [inside] if inside == local else [inside, local]
        lines += "".join(f"Record-Route: {proxy._route_uri(e, token)}\r\n" for e in entries)

    forwards = str(min(int(mf_text), 255) - 1).encode()
    via_bytes = new_via.encode("utf-8", "surrogateescape")
    head = line_end + 2
    if via0 < mf0:
        middle = [data[head:via0], via_bytes, data[via1:mf0], forwards, data[mf1:]]
    else:
        middle = [data[head:mf0], forwards, data[mf1:via0], via_bytes, data[via1:]]
    return [
        Send(
            proxy.settings.backend,
            b"".join([data[:head], lines.encode("utf-8", "surrogateescape"), *middle]),
        )
    ]


def backend_response(proxy: StatelessProxy, data: bytes, view: Peek) -> list[Action] | None:
    """The fast path for the backend's answer to a client; None when it does not apply."""
    layout = view.layout
    if layout is None or view.status is None:
        return None
    _, repeated, via0, via1, _, _, sv0, sv1, ua0, ua1, ct0, ct1 = layout
    if repeated & (1 << CONTACT):
        return None
    if repeated & ((1 << SERVER) | (1 << USER_AGENT)) or via0 < 0:
        return None
    if view.raw_values[RECORD_ROUTE] is not None:
        return None  # a route set to hide: the general path
    line = view.raw_values[VIA]
    top = _top_via(line)
    if top is None or not (top[1].branch or "").startswith(BRANCH_PREFIX):
        return None
    via_text, parts = top
    assert line is not None
    token = None
    params = view.simple_via_params()  # (read already by the edge, for the policy: kept)
    for name, value in params if params is not None else simple_params(parts.params):
        if name == TOKEN_PARAM:
            token = value
            break
    flow = proxy.flow_of(token)
    if flow is None:
        return None  # the general path drops it, and says why

    # the PBX's Contact becomes the edge's (not in an answer to REGISTER:
    # those are the phone's own bindings)
    contact_edit = None
    if ct0 >= 0:
        contact = view.raw_values[CONTACT]
        assert contact is not None
        try:
            method = view.cseq_method
        except SipError:
            return None
        if method != "REGISTER":
            contact_parts = name_addr_parts(contact)
            if contact_parts is None or "," in contact:
                return None
            hidden = proxy.hidden_contact(flow, contact_parts.uri_text, contact_parts.header_params)
            if hidden is None:
                return None
            contact_edit = (ct0, ct1, hidden.encode("utf-8", "surrogateescape"))

    # cut the top Via (its whole line, or its value and comma when more values
    # share the line); replace or cut the Server and User-Agent lines
    if len(via_text) == len(line):
        cuts: list[tuple[int, int, bytes]] = [(_line_start(data, via0), _line_end(data, via1), b"")]
    else:
        rest = line[len(via_text) :]  # ", SIP/2.0/UDP next..."
        skip = len(rest) - len(rest.lstrip(" \t,")) if rest.lstrip(" \t").startswith(",") else -1
        if skip < 0:
            return None
        cut_to = via0 + len((via_text + rest[:skip]).encode("utf-8", "surrogateescape"))
        cuts = [(via0, cut_to, b"")]
    neutral = proxy.settings.server_header
    for start, end in ((sv0, sv1), (ua0, ua1)):
        if start >= 0:
            if neutral:
                cuts.append((start, end, neutral.encode("utf-8", "surrogateescape")))
            else:
                cuts.append((_line_start(data, start), _line_end(data, end), b""))
    if contact_edit is not None:
        cuts.append(contact_edit)
    cuts.sort()
    out, at = [], 0
    for start, end, replacement in cuts:
        out += [data[at:start], replacement]
        at = end
    out.append(data[at:])
    return [Send(flow, b"".join(out))]


def _top_via(line: str | None) -> tuple[str, ViaParts] | None:
    """The top Via value as written at the start of its line, and its parts,
    when it has the simple shape; None otherwise."""
    if line is None:
        return None
    comma = line.find(",")
    text = line if comma < 0 else line[:comma].rstrip(" \t")
    parts = via_parts(text)
    return None if parts is None else (text, parts)


def _line_start(data: bytes, offset: int) -> int:
    return data.rfind(b"\r\n", 0, offset) + 2


def _line_end(data: bytes, offset: int) -> int:
    """Just past the CRLF that ends the line holding ``offset``."""
    return data.index(b"\r\n", offset) + 2


def _flag_at(text: str, flag: str) -> int:
    """Where the parameter ``flag`` (``;rport``) stands without a value, or -1."""
    at = text.find(flag)
    while at >= 0:
        after = at + len(flag)
        if after == len(text) or text[after] == ";":
            return at
        at = text.find(flag, after)
    return -1
