"""The one exception the SIP layer raises, and the defects it records.

Every rejection carries a machine-readable ``reason`` (a short kebab-case
word from the tables below) so that callers can count, log and match on it
without parsing prose. Input that is wrong but tolerable is accepted, and the
tolerance is recorded as a *defect* on the message instead of passing silently.
"""

from __future__ import annotations

from typing import Final

# Reasons a message (or one of its parts) is rejected.
EMPTY: Final = "empty-message"
BAD_START_LINE: Final = "bad-start-line"
BAD_REQUEST_LINE: Final = "bad-request-line"
BAD_STATUS_LINE: Final = "bad-status-line"
BAD_VERSION: Final = "bad-version"
BAD_REQUEST_URI: Final = "bad-request-uri"
BAD_HEADER: Final = "bad-header"
INCOMPLETE_HEADERS: Final = "incomplete-headers"
BAD_CONTENT_LENGTH: Final = "bad-content-length"
DUPLICATE_CONTENT_LENGTH: Final = "duplicate-content-length"
CONTENT_LENGTH_MISMATCH: Final = "content-length-mismatch"
MISSING_CONTENT_LENGTH: Final = "missing-content-length"
TOO_LARGE: Final = "message-too-large"
BAD_URI: Final = "bad-uri"
BAD_NAME_ADDR: Final = "bad-name-addr"
BAD_VIA: Final = "bad-via"
BAD_CSEQ: Final = "bad-cseq"
CSEQ_METHOD_MISMATCH: Final = "cseq-method-mismatch"
BAD_MAX_FORWARDS: Final = "bad-max-forwards"
BAD_EXPIRES: Final = "bad-expires"
BAD_AUTH: Final = "bad-auth"
MISSING_HEADER: Final = "missing-header"
# Duplicates of single-valued headers use "duplicate-<header>", e.g. duplicate-call-id.

# Defects: tolerated deviations recorded on an accepted message.
D_LEADING_CRLF: Final = "leading-crlf"
D_BARE_LF: Final = "bare-lf-line-endings"
D_NO_HEADER_TERMINATOR: Final = "no-header-terminator"
D_TRAILING_BYTES: Final = "bytes-after-body"
D_START_LINE_WHITESPACE: Final = "start-line-extra-whitespace"
D_NO_REASON_SEPARATOR: Final = "status-line-no-reason"
D_NO_CONTENT_LENGTH: Final = "no-content-length"
D_MAX_FORWARDS_RANGE: Final = "max-forwards-out-of-range"
D_EXPIRES_RANGE: Final = "expires-out-of-range"
D_LWS_IN_ADDR_SPEC: Final = "lws-in-addr-spec"
D_NO_MAX_FORWARDS: Final = "no-max-forwards"
D_BRANCH_COOKIE_ONLY: Final = "branch-cookie-only"
D_NO_BRANCH: Final = "no-branch"
D_NO_FROM_TAG: Final = "no-from-tag"
D_EMPTY_HEADER_VALUE_IN_LIST: Final = "empty-list-element"


class SipError(ValueError):
    """A SIP message, or a part of one, that cannot be accepted.

    ``reason`` is one of the constants of this module (or
    ``duplicate-<header>``); ``detail`` is a short human explanation.
    """

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
