"""The known-good record (the kernel lane's): which logins it reports, when
it renews them, its bounds; and the policy that feeds it from the backend's
answers."""

from __future__ import annotations

from sipwarden.config import config_from_dict
from sipwarden.policy import build_policy
from sipwarden.policy.known_good import KnownGood
from sipwarden.sip import peek

PHONE = "203.0.113.9"
TRUNK = "198.51.100.7"


def test_a_login_is_reported_once_then_renewed_after_half_the_timeout():
    good = KnownGood(timeout=100)
    good.logged_in(PHONE, 0.0)
    assert good.drain() == {PHONE: 100.0}  # the kernel entry ends a timeout later
    for t in (10.0, 30.0, 49.9):  # re-registrations: nothing to tell the kernel
        good.logged_in(PHONE, t)
    assert good.drain() == {}
    good.logged_in(PHONE, 50.0)  # half the timeout on: renewed before it ends
    assert good.drain() == {PHONE: 150.0}
    assert good.counters == {"reported": 1, "renewed": 1}
    assert good.known(PHONE, 149.0) and not good.known(PHONE, 150.0)
    assert not good.known("192.0.2.1", 0.0)


def test_reports_of_the_moment_make_one_batch_and_wake_the_keeper_once():
    woken = []
    good = KnownGood(timeout=100, on_change=lambda: woken.append(1))
    for i in range(50):
        good.logged_in(f"192.0.2.{i}", 1.0 + i / 100)
    assert len(woken) == 1  # the keeper was woken by the first; the others join its batch
    batch = good.drain()
    assert len(batch) == 50 and good.pending == 0
    good.logged_in("192.0.2.200", 5.0)
    assert len(woken) == 2


def test_what_the_kernel_did_not_take_is_reported_at_the_next_login():
    good = KnownGood(timeout=100)
    good.logged_in(PHONE, 0.0)
    good.drain()
    good.unreported([PHONE])
    good.logged_in(PHONE, 1.0)
    assert good.drain() == {PHONE: 101.0}


def test_it_is_bounded_in_sources_and_in_reports_waiting():
    good = KnownGood(timeout=100, max_sources=3, max_pending=2)
    for i in range(3):
        good.logged_in(f"192.0.2.{i}", float(i))
    # the third did not fit the waiting reports: dropped, counted, and
    # reported at its next login (it is not taken as reported)
    assert good.counters["dropped"] == 1 and good.pending == 2
    assert set(good.drain()) == {"192.0.2.0", "192.0.2.1"}
    good.logged_in("192.0.2.2", 3.0)
    assert good.drain() == {"192.0.2.2": 103.0}
    good.logged_in("192.0.2.3", 4.0)  # a fourth source: the least recent is forgotten
    assert len(good) == 3 and good.counters["forgotten"] == 1
    assert not good.known("192.0.2.0", 4.0)
    good.logged_in("192.0.2.0", 5.0)  # so its next login is reported again
    assert "192.0.2.0" in good.drain()


# ------------------------------------------------------- from the answers


def answer(status: int, method: str = "REGISTER") -> tuple[bytes, object]:
    data = (
        f"SIP/2.0 {status} Whatever\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKswx\r\n"
        "From: <sip:100@pbx.test>;tag=a\r\nTo: <sip:100@pbx.test>;tag=b\r\n"
        f"Call-ID: c1\r\nCSeq: 2 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    return data, peek(data)


def lane_policy(**firewall):
    config = config_from_dict(
        {
            "firewall": {"enforcer": "nftables", **firewall},
            "policy": {"trusted_peers": [TRUNK]},
        }
    )
    return build_policy(config)


def test_a_2xx_to_a_login_with_credentials_makes_a_source_known_good():
    policy = lane_policy(lane={"known_good_timeout": "1h"})
    good = policy.known_good
    assert good is not None and good.timeout == 3600
    assert policy.reads_answer(200)  # even with no failure tracked
    cases = [
        (200, "REGISTER", True, "192.0.2.1"),  # a phone registered
        (200, "REGISTER", True, "192.0.2.2"),
        # a call answered: an IVR may answer any credentials, a spoofed source's too
        (200, "INVITE", True, "192.0.2.9"),
        (202, "REGISTER", True, "192.0.2.3"),  # any 2xx
        (200, "REGISTER", False, "192.0.2.4"),  # no credentials: proves nothing
        (200, "OPTIONS", True, "192.0.2.5"),  # not a login
        (200, "BYE", True, "192.0.2.6"),
        (401, "REGISTER", True, "192.0.2.7"),  # a failed login
        (407, "INVITE", True, "192.0.2.8"),
        (200, "REGISTER", True, TRUNK),  # a trusted peer: the kernel has it already
    ]
    for status, method, credentials, client in cases:
        data, view = answer(status, method)
        policy.answer(data, view, client, credentials, 1000.0)  # type: ignore[arg-type]
    assert good.drain() == {h: 1000.0 + 3600 for h in ("192.0.2.1", "192.0.2.2", "192.0.2.3")}


def test_fingerprint_bans_keep_the_record_without_a_lane():
    # a source that logged in is never banned on a fingerprint alone (a
    # forged packet): the record is kept whatever the enforcer
    assert build_policy(config_from_dict({})).known_good is not None


def test_no_record_without_a_lane_and_the_same_one_after_a_reload():
    for config in (
        # enforcer "none": no lane (and no fingerprint bans, which need the record too)
        config_from_dict({"fingerprints": {"ban": False}}),
        config_from_dict(
            {
                "firewall": {"enforcer": "nftables", "lane": {"enabled": False}},
                "policy": {"pack": False},
            }
        ),
    ):
        policy = build_policy(config)
        assert policy.known_good is None
        assert not policy.reads_answer(200)  # a 2xx costs nothing then
    first = lane_policy()
    assert first.known_good is not None
    first.known_good.logged_in(PHONE, 0.0)
    config = config_from_dict({"firewall": {"enforcer": "nftables"}})
    second = build_policy(config, previous=first)
    assert second.known_good is first.known_good  # a reload keeps what was learned
