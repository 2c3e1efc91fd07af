"""The sanity stage: drop what no well-behaved SIP element sends, in the
spirit of Kamailio's sanity module.

Reasons (each a drop):
- ``sanity.missing-via``, ``-from``, ``-to``, ``-call-id``, ``-cseq``: a
  mandatory header is missing (requests and responses);
- ``sanity.bad-cseq``: a request's CSeq does not parse;
- ``sanity.cseq-method``: a request's CSeq method is not its method;
- ``sanity.uri-too-long``: a Request-URI over ``policy.max_uri_length``;
- ``sanity.uri-scheme``: a Request-URI that is not ``sip:``, ``sips:`` or
  ``tel:`` (any case).

Cost: one tuple test and a few string comparisons on a sane request; the
typed parsers only run for shapes the fast tests do not settle.
"""

from __future__ import annotations

from typing import Final

from ...sip import Peek, SipError
from ...values import Peer, Verdict

_SCHEMES: Final = ("sip:", "sips:", "tel:", "SIP:", "SIPS:", "TEL:")  # the fast test
_SCHEME_NAMES: Final = ("sip", "sips", "tel")  # any case
MISSING: Final = {
    key: Verdict("drop", f"sanity.missing-{key}")
    for key in ("via", "from", "to", "call-id", "cseq")
}
BAD_CSEQ: Final = Verdict("drop", "sanity.bad-cseq")
CSEQ_METHOD: Final = Verdict("drop", "sanity.cseq-method")
URI_TOO_LONG: Final = Verdict("drop", "sanity.uri-too-long")
URI_SCHEME: Final = Verdict("drop", "sanity.uri-scheme")


class Sanity:
    """Mandatory headers, CSeq method, Request-URI length and scheme."""

    name: Final = "sanity"

    def __init__(self, max_uri_length: int = 1024) -> None:
        self.max_uri_length = max_uri_length

    def decide(self, view: Peek, source: Peer, local_port: int, now: float) -> Verdict | None:
        missing = view.missing_mandatory()
        if missing is not None:
            return MISSING[missing]
        if view.method is None:
            return None
        try:
            cseq_method = view.cseq_method
        except SipError:
            return BAD_CSEQ
        if cseq_method != view.method:
            return CSEQ_METHOD
        uri = view.uri_text or ""
        if len(uri) > self.max_uri_length:
            return URI_TOO_LONG
        if not uri.startswith(_SCHEMES) and uri.partition(":")[0].lower() not in _SCHEME_NAMES:
            return URI_SCHEME
        return None
