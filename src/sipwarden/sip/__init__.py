"""Sans-I/O SIP: parse bytes into messages, frame streams, build and edit;
compute and check digest authentication.

Nothing here does I/O or keeps global state; every function is safe to call
on hostile input and raises only ``SipError``.
"""

from .address import Address, parse_address
from .build import make_request, make_response, reason_phrase
from .digest import (
    answer_challenge,
    check_digest,
    digest_authorization,
    digest_ha1,
    digest_response,
    offers_auth,
)
from .errors import SipError
from .fields import Auth, CSeq, Via, parse_auth, parse_cseq, parse_via
from .framing import PING, StreamFramer, parse_frame
from .message import Header, Message, parse
from .names import canonical_name, header_key
from .peek import PEEKED_HEADERS, Peek, peek
from .uri import URI, parse_uri

__all__ = [
    "PEEKED_HEADERS",
    "PING",
    "URI",
    "Address",
    "Auth",
    "CSeq",
    "Header",
    "Message",
    "Peek",
    "SipError",
    "StreamFramer",
    "Via",
    "answer_challenge",
    "canonical_name",
    "check_digest",
    "digest_authorization",
    "digest_ha1",
    "digest_response",
    "header_key",
    "make_request",
    "make_response",
    "offers_auth",
    "parse",
    "parse_address",
    "parse_auth",
    "parse_cseq",
    "parse_frame",
    "parse_uri",
    "parse_via",
    "peek",
    "reason_phrase",
]
