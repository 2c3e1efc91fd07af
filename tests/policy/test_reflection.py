"""The reflection budget: an unverified source gets back at most a multiple
of what it sent, in total too; a source that shows it receives at its
address (TCP, our nonce, our To tag) is no longer limited; every table is
bounded."""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from sipwarden.policy import ReflectionBudget
from sipwarden.policy.reflection import NONCES, TAGS
from sipwarden.sip import peek

from ..conftest import tracked_after_collection

SOURCE, OTHER = "198.51.100.7", "203.0.113.9"


def answer(
    status: str = "100 Trying", *, tag: str | None = None, extra: str = "", method="REGISTER"
) -> bytes:
    """One of the PBX's answers (its size is what the budget charges)."""
    to = "<sip:100@pbx.test>" + (f";tag={tag}" if tag else "")
    return (
        f"SIP/2.0 {status}\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776;rport=5060\r\n"
        f"From: <sip:100@pbx.test>;tag=a\r\nTo: {to}\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def challenge(nonce: str, *, proxy: bool = False, tag: str = "t401") -> bytes:
    if proxy:
        return answer(
            "407 Proxy Authentication Required",
            tag=tag,
            extra=f'Proxy-Authenticate: Digest realm="pbx.test", nonce="{nonce}"\r\n',
        )
    return answer(
        "401 Unauthorized",
        tag=tag,
        extra=f'WWW-Authenticate: Digest realm="pbx.test", nonce="{nonce}", algorithm=MD5\r\n',
    )


def request(
    method: str = "REGISTER", *, nonce: str | None = None, to_tag: str | None = None, proxy=False
) -> bytes:
    to = "<sip:100@pbx.test>" + (f";tag={to_tag}" if to_tag else "")
    header = "Proxy-Authorization" if proxy else "Authorization"
    auth = (
        f'{header}: Digest username="100", realm="pbx.test", nonce="{nonce}", '
        'uri="sip:pbx.test", response="00000000000000000000000000000000"\r\n'
        if nonce is not None
        else ""
    )
    return (
        f"{method} sip:pbx.test SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK777;rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:100@pbx.test>;tag=a\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 2 {method}\r\n"
        f"{auth}Content-Length: 0\r\n\r\n"
    ).encode()


def sent_to(budget: ReflectionBudget, host: str, data: bytes, now: float = 0.0) -> None:
    budget.received(host, len(data), peek(data), now)


# ------------------------------------------------------------------ the ratio


def test_answers_add_up_to_at_most_the_ratio_of_what_the_source_sent():
    budget = ReflectionBudget(ratio=1.5, total=0)
    budget.received(SOURCE, 200, None, 0.0)  # credit: 300 bytes
    assert budget.permit(SOURCE, b"x" * 250, 0.0)
    assert not budget.permit(SOURCE, b"x" * 51, 0.0)  # 301 > 300
    assert budget.permit(SOURCE, b"x" * 50, 0.0)  # exactly 300
    assert not budget.permit(SOURCE, b"x", 0.0)
    c = budget.counters
    assert (c["reflection-sent"], c["reflection-sent-bytes"]) == (2, 300)
    assert (c["reflection-withheld"], c["reflection-withheld-bytes"]) == (2, 52)
    assert c["reflection-withheld:ratio"] == 2 and c["reflection-withheld:total"] == 0
    budget.received(SOURCE, 100, None, 1.0)  # sends more: earns more
    assert budget.permit(SOURCE, b"x" * 150, 1.0)


def test_an_answer_is_withheld_whole_and_so_are_its_retransmissions():
    """The spoofed INVITE to a registered user: 100 Trying, then the PBX's
    408 retransmitted until an ACK that never comes."""
    budget = ReflectionBudget(ratio=1.5, total=0)
    invite = request("INVITE")
    sent_to(budget, SOURCE, invite)
    trying, timeout = answer("100 Trying"), answer("408 Request Timeout", tag="k1")
    out = 0
    for data in (trying, timeout, timeout, timeout, timeout, timeout):
        if budget.permit(SOURCE, data, 0.0):
            out += len(data)
    assert len(trying) + len(timeout) > 1.5 * len(invite)
    assert out == len(trying)  # what fits goes, whole; the rest never does
    assert budget.counters["reflection-withheld"] == 5


def test_a_source_never_heard_from_gets_nothing():
    budget = ReflectionBudget(total=0)
    assert not budget.permit(SOURCE, answer(), 0.0)
    assert len(budget) == 1


def test_a_stricter_ratio_for_one_answer_never_a_looser_one():
    """Deception passes ratio=1.0: never more bytes than the source sent."""
    budget = ReflectionBudget(ratio=1.5, total=0)
    budget.received(SOURCE, 100, None, 0.0)
    assert not budget.permit(SOURCE, b"x" * 101, 0.0, ratio=1.0)
    assert budget.permit(SOURCE, b"x" * 100, 0.0, ratio=1.0)
    budget.received(OTHER, 100, None, 0.0)
    assert not budget.permit(OTHER, b"x" * 151, 0.0, ratio=5.0)  # capped at 1.5


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 1500), st.sampled_from([SOURCE, OTHER])),
        max_size=60,
    ),
    st.sampled_from([1.0, 1.5, 2.0]),
)
def test_whatever_the_order_no_source_ever_gets_more_than_its_ratio(events, ratio):
    budget = ReflectionBudget(ratio=ratio, total=0)
    got = {SOURCE: 0, OTHER: 0}
    sent = {SOURCE: 0, OTHER: 0}
    for inbound, size, host in events:
        if inbound:
            budget.received(host, size, None, 0.0)
            sent[host] += size
        elif budget.permit(host, b"x" * size, 0.0):
            got[host] += size
        assert got[host] <= ratio * sent[host]


# ------------------------------------------------------------------ the total


def test_the_total_caps_all_unverified_sources_together_per_second():
    budget = ReflectionBudget(ratio=2.0, total=1000)
    for host in (SOURCE, OTHER):
        budget.received(host, 10_000, None, 0.0)  # each has plenty of credit
    assert budget.permit(SOURCE, b"x" * 600, 0.0)
    assert budget.permit(OTHER, b"x" * 400, 0.0)
    assert not budget.permit(OTHER, b"x" * 1, 0.0)  # the second's 1000 bytes are out
    assert budget.counters["reflection-withheld:total"] == 1
    assert budget.permit(SOURCE, b"x" * 500, 0.5)  # half a second refills half
    assert not budget.permit(SOURCE, b"x" * 10, 0.5)
    assert budget.permit(SOURCE, b"x" * 1000, 10.0)  # a second deep, never more
    assert not budget.permit(SOURCE, b"x" * 1, 10.0)
    # what the total withheld was not charged to the source
    assert budget.counters["reflection-sent-bytes"] == 2500


def test_verified_and_exempt_sources_do_not_spend_the_total():
    budget = ReflectionBudget(ratio=1.5, total=100, exempt=lambda host: host == OTHER)
    budget.verify(SOURCE, 0.0, "tcp")
    assert budget.permit(SOURCE, b"x" * 5000, 0.0)
    assert budget.permit(OTHER, b"x" * 5000, 0.0)  # a trusted peer, never heard from
    host = "192.0.2.1"
    budget.received(host, 100, None, 0.0)
    assert budget.permit(host, b"x" * 100, 0.0)


# -------------------------------------------------------------- verification


def test_a_tcp_handshake_verifies_for_a_time():
    budget = ReflectionBudget(total=0, verified_for=60.0)
    budget.verify(SOURCE, 100.0, "tcp")
    assert budget.is_verified(SOURCE, 159.0)
    assert budget.permit(SOURCE, b"x" * 10_000, 159.0)
    assert not budget.permit(SOURCE, b"x" * 10_000, 161.0)  # expired: limited again
    assert budget.counters["reflection-verified:tcp"] == 1


def test_our_nonce_in_its_digest_answer_verifies_it():
    budget = ReflectionBudget(total=0)
    register = request()
    sent_to(budget, SOURCE, register)
    assert budget.permit(SOURCE, challenge("n0nce-for-7"), 0.0)
    sent_to(budget, SOURCE, request(nonce="n0nce-for-7"), 1.0)
    assert budget.is_verified(SOURCE, 1.0)
    assert budget.counters["reflection-verified:nonce"] == 1
    assert budget.permit(SOURCE, b"x" * 100_000, 1.0)  # no longer limited
    assert len(budget) == 0  # its entry is of no more use


def test_a_proxy_challenge_nonce_proves_as_well():
    budget = ReflectionBudget(total=0)
    sent_to(budget, SOURCE, request("INVITE"))
    assert budget.permit(SOURCE, challenge("pr0xy", proxy=True), 0.0)
    sent_to(budget, SOURCE, request("INVITE", nonce="pr0xy", proxy=True), 1.0)
    assert budget.is_verified(SOURCE, 1.0)


def test_a_folded_challenge_header_is_read():
    budget = ReflectionBudget(total=0)
    budget.received(SOURCE, 1000, None, 0.0)
    folded = answer(
        "401 Unauthorized",
        tag="f",
        extra='WWW-Authenticate: Digest realm="pbx.test",\r\n nonce="f0lded"\r\n',
    )
    assert budget.permit(SOURCE, folded, 0.0)
    sent_to(budget, SOURCE, request(nonce="f0lded"), 1.0)
    assert budget.is_verified(SOURCE, 1.0)


def test_nonces_that_prove_nothing():
    budget = ReflectionBudget(total=0)
    sent_to(budget, SOURCE, request())
    sent_to(budget, OTHER, request())
    assert budget.permit(SOURCE, challenge("for-source"), 0.0)
    # one it never got (a guess, or one from the PBX's challenge to someone else)
    sent_to(budget, SOURCE, request(nonce="guessed"), 1.0)
    # the nonce SOURCE got, replayed in OTHER's name (an attacker who logs in
    # from its own address cannot lend that proof to a spoofed one)
    sent_to(budget, OTHER, request(nonce="for-source"), 1.0)
    assert not budget.is_verified(SOURCE, 1.0) and not budget.is_verified(OTHER, 1.0)
    # the nonce of a challenge the budget withheld was never sent: no proof
    host = "192.0.2.1"
    budget.received(host, 10, None, 0.0)
    assert not budget.permit(host, challenge("withheld"), 0.0)
    sent_to(budget, host, request(nonce="withheld"), 1.0)
    assert not budget.is_verified(host, 1.0)


def test_our_to_tag_in_its_next_request_verifies_it():
    budget = ReflectionBudget(total=0)
    sent_to(budget, SOURCE, request("INVITE"))
    assert budget.permit(SOURCE, answer("404 Not Found", tag="pbx-tag-1", method="INVITE"), 0.0)
    sent_to(budget, SOURCE, request("ACK", to_tag="other-tag"), 1.0)
    assert not budget.is_verified(SOURCE, 1.0)
    sent_to(budget, SOURCE, request("ACK", to_tag="pbx-tag-1"), 1.0)
    assert budget.is_verified(SOURCE, 1.0)
    assert budget.counters["reflection-verified:tag"] == 1


def test_a_tag_the_source_wrote_itself_proves_nothing():
    """A spoofer sends an in-dialog INVITE with a To tag of its choosing in a
    victim's name; the PBX echoes that tag in its 401 (or 481) to the
    victim. The spoofer's next request with that tag must not verify the
    victim's address (it would lift the reflection limit on it)."""
    budget = ReflectionBudget(ratio=10.0, total=0)
    sent_to(budget, SOURCE, request("INVITE", to_tag="chosen"))
    assert budget.permit(SOURCE, challenge("n1", tag="chosen"), 0.0)  # the tag echoed
    assert budget.permit(
        SOURCE, answer("481 Call Does Not Exist", tag="chosen", method="INVITE"), 0.0
    )
    sent_to(budget, SOURCE, request("ACK", to_tag="chosen"), 1.0)
    assert not budget.is_verified(SOURCE, 1.0)
    # the PBX's own tag, on an answer to a request that carried none, still proves
    sent_to(budget, SOURCE, request("INVITE"), 2.0)
    assert budget.permit(SOURCE, answer("404 Not Found", tag="pbx-made", method="INVITE"), 2.0)
    sent_to(budget, SOURCE, request("ACK", to_tag="pbx-made"), 3.0)
    assert budget.is_verified(SOURCE, 3.0)


def test_only_answers_that_make_dialogs_or_challenge_leave_a_tag():
    """No request comes back with the tag of an answer to OPTIONS or
    REGISTER: those are not kept (nor read: it spares the work)."""
    budget = ReflectionBudget(ratio=10.0, total=0)
    budget.received(SOURCE, 10_000, None, 0.0)
    for method in ("OPTIONS", "REGISTER"):
        assert budget.permit(SOURCE, answer("200 OK", tag=f"{method}-tag", method=method), 0.0)
        sent_to(budget, SOURCE, request("ACK", to_tag=f"{method}-tag"), 1.0)
    assert not budget.is_verified(SOURCE, 1.0)
    assert budget.permit(SOURCE, challenge("n", tag="challenged"), 0.0)  # a 401 to REGISTER
    sent_to(budget, SOURCE, request("ACK", to_tag="challenged"), 1.0)
    assert budget.is_verified(SOURCE, 1.0)


def test_an_answer_from_the_source_proves_nothing():
    """Only requests prove: a response carrying our tag is the source
    echoing a request the PBX sent it, not an answer to ours."""
    budget = ReflectionBudget(total=0)
    sent_to(budget, SOURCE, request("INVITE"))
    assert budget.permit(SOURCE, answer("404 Not Found", tag="t9", method="INVITE"), 0.0)
    sent_to(budget, SOURCE, answer("200 OK", tag="t9"), 1.0)
    assert not budget.is_verified(SOURCE, 1.0)


def test_only_the_last_few_nonces_and_tags_are_kept():
    budget = ReflectionBudget(ratio=10.0, total=0)
    budget.received(SOURCE, 100_000, None, 0.0)
    for i in range(NONCES + 1):
        assert budget.permit(SOURCE, challenge(f"nonce-{i}", tag=f"tag-{i}"), 0.0)
    assert TAGS <= NONCES + 1
    sent_to(budget, SOURCE, request(nonce="nonce-0"), 1.0)  # forgotten
    sent_to(budget, SOURCE, request("ACK", to_tag="tag-0"), 1.0)
    assert not budget.is_verified(SOURCE, 1.0)
    sent_to(budget, SOURCE, request(nonce=f"nonce-{NONCES}"), 1.0)
    assert budget.is_verified(SOURCE, 1.0)


def test_a_broken_credential_proves_nothing_and_raises_nothing():
    budget = ReflectionBudget(total=0)
    sent_to(budget, SOURCE, request())
    assert budget.permit(SOURCE, challenge("n1"), 0.0)
    broken = request(nonce="n1").replace(b"Authorization: Digest", b"Authorization: ")
    sent_to(budget, SOURCE, broken, 1.0)
    assert not budget.is_verified(SOURCE, 1.0)
    assert not budget.permit(SOURCE, b"\xff" * 10_000, 1.0)  # garbage is charged, not read


# ------------------------------------------------------------------ bounds


def test_unverified_sources_are_bounded_and_forgetting_grants_nothing():
    budget = ReflectionBudget(ratio=1.5, total=0, max_sources=3)
    for i in range(10):
        budget.received(f"192.0.2.{i}", 1000, None, 0.0)
    assert len(budget) == 3
    assert budget.counters["reflection-forgotten"] == 7
    assert not budget.permit("192.0.2.0", b"x", 0.0)  # forgotten with its credit
    assert budget.permit("192.0.2.9", b"x" * 1500, 0.0)


def test_verified_sources_are_bounded():
    budget = ReflectionBudget(total=0, max_verified=2)
    for i in range(5):
        budget.verify(f"192.0.2.{i}", 0.0, "tcp")
    assert budget.verified_count == 2
    assert budget.is_verified("192.0.2.4", 0.0) and not budget.is_verified("192.0.2.0", 0.0)
    assert budget.counters["reflection-verified-forgotten"] == 3
    # (which of the older ones goes first is not kept: the most recent stays)
    budget.verify("192.0.2.4", 1.0, "tcp")  # proved again: counted once, refreshed
    assert budget.counters["reflection-verified:tcp"] == 5


def test_a_spoofed_flood_from_a_million_sources_stays_bounded():
    budget = ReflectionBudget(total=10_000, max_sources=1000, max_verified=10)
    trying = answer()
    sent = 0
    for i in range(20_000):
        host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        budget.received(host, 150, None, i / 20_000)
        sent += budget.permit(host, trying, i / 20_000) * len(trying)
    assert len(budget) == 1000 and budget.verified_count == 0
    assert sent <= 10_000 * 2  # the bucket's second, then one second of refill
    assert budget.counters["reflection-withheld"] > 19_000


def test_bad_settings_are_refused():
    for bad in ({"ratio": 0}, {"total": -1}, {"verified_for": 0}, {"max_sources": 0}):
        try:
            ReflectionBudget(**bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_many_sources_leave_nothing_per_source_for_the_collector_to_walk():
    """A spoofed flood fills the table of unverified sources: what it keeps
    per source (bytes each way, nonces, To tags) is a tuple of atomics, so
    5,000 more sources add no object a full collection walks."""
    budget = ReflectionBudget(total=0, max_sources=10_000)

    def flood(first: int, count: int) -> None:
        for i in range(first, first + count):
            host = f"198.18.{i >> 8}.{i & 255}"
            budget.received(host, 600, peek(request()), float(i))
            assert budget.permit(host, challenge(f"n{i}", tag=f"t{i}"), float(i))

    flood(0, 100)
    before = tracked_after_collection()
    flood(100, 5_000)
    assert len(budget) == 5_100
    # nor is any table of it tracked, between collections (an OrderedDict,
    # or a dict given a fresh tuple, would be walked entry by entry)
    for recent in (budget._sources, budget._proofs, budget._verified):
        assert not gc.is_tracked(recent.young) and not gc.is_tracked(recent.old)
    assert tracked_after_collection() - before < 100
    # what it kept still proves: the last source's nonce verifies it
    last = "198.18.19.235"  # source 5,099
    budget.received(last, 600, peek(request(nonce="n5099")), 6_000.0)
    assert budget.is_verified(last, 6_000.0)
