"""The toll-fraud stage through ``Policy.judge_bytes``: a prefix walk banned, the
quiet-time rule, and what the stage leaves alone (phones, re-INVITEs, REGISTER)."""

from __future__ import annotations

from sipwarden.intel.numbers import Dialplan, Number
from sipwarden.policy import Policy
from sipwarden.policy.bans import BanBook
from sipwarden.policy.stages import BannedSources
from sipwarden.policy.stages.tollfraud import QUIET_INTERNATIONAL, TollFraudStage
from sipwarden.policy.tollfraud import PREFIX_WALK, QuietAction, TollFraud
from sipwarden.values import Peer

ATTACKER = Peer("udp", "203.0.113.66", 5070)
PHONE = Peer("udp", "198.51.100.20", 40000)
GB = Dialplan("GB", ["00"], ["9"])
T0 = 1_800_000_000.0


def invite(number: str, source: Peer = ATTACKER, *, to_tag: str = "") -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 0\r\n"
    )
    return (
        f"INVITE sip:{number}@203.0.113.5 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK-{number};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:100@203.0.113.5>;tag=abc{number}\r\n"
        f"To: <sip:{number}@203.0.113.5>{';tag=' + to_tag if to_tag else ''}\r\n"
        f"Call-ID: {number}@{source.host}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:100@{source.host}:{source.port}>\r\n"
        "User-Agent: Cisco-SIPGateway/IOS-12.x\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def policy(
    *, quiet: bool = False, international: QuietAction = "allow", detector: bool = True
) -> tuple[Policy, list[tuple[Peer, Number]]]:
    alerts: list[tuple[Peer, Number]] = []
    stage = TollFraudStage(
        GB,
        TollFraud() if detector else None,
        vouched=lambda host, now: host == PHONE.host,
        quiet=lambda now: quiet,
        international=international,
        alert=lambda source, number, now: alerts.append((source, number)),
    )
    book = BanBook()
    return Policy(screens=[BannedSources(book)], stages=[stage], bans=book), alerts


def judge(p: Policy, data: bytes, source: Peer = ATTACKER, now: float = T0) -> tuple[str, str]:
    verdict, _ = p.judge_bytes(data, source, 5060, now)
    return verdict.kind, verdict.reason


def test_a_prefix_walk_is_banned_at_its_second_prefix() -> None:
    p, _ = policy()
    assert judge(p, invite("00972597562518")) == ("forward", "")
    assert judge(p, invite("011972597562518"), now=T0 + 5) == ("ban", PREFIX_WALK)
    ban = p.bans.banned(ATTACKER.host, T0 + 6) if p.bans is not None else None
    assert ban is not None and ban.detector == PREFIX_WALK
    assert judge(p, invite("9011972597562518"), now=T0 + 7) == ("drop", "banned")


def test_a_phone_that_logged_in_is_not_watched() -> None:
    p, _ = policy()
    for i, number in enumerate(("00972597562518", "011972597562518", "+972597562518")):
        assert judge(p, invite(number, PHONE), PHONE, T0 + i) == ("forward", "")


def test_re_invites_registers_and_extensions_are_left_alone() -> None:
    p, _ = policy(quiet=True, international="drop")
    assert judge(p, invite("00972597562518", to_tag="dlg1")) == ("forward", "")
    assert judge(p, invite("011972597562518", to_tag="dlg1")) == ("forward", "")
    assert judge(p, invite("100")) == ("forward", "")
    assert judge(p, invite("*97")) == ("forward", "")
    register = invite("00972597562518").replace(b"INVITE", b"REGISTER")
    assert judge(p, register) == ("forward", "")


def test_the_quiet_time_rule() -> None:
    night, _ = policy(quiet=True, international="drop", detector=False)
    assert judge(night, invite("00972597562518")) == ("drop", QUIET_INTERNATIONAL.reason)
    assert judge(night, invite("02037690000")) == ("forward", "")  # national
    assert judge(night, invite("00972597562518", PHONE), PHONE) == ("forward", "")
    day, _ = policy(quiet=False, international="drop", detector=False)
    assert judge(day, invite("00972597562518")) == ("forward", "")
    told, alerts = policy(quiet=True, international="alert", detector=False)
    assert judge(told, invite("00972597562518")) == ("forward", "")
    assert [(s, n.e164, n.country) for s, n in alerts] == [(ATTACKER, "972597562518", "IL")]


def test_the_built_policy_bans_a_prefix_walk_and_keeps_the_detector_across_a_reload() -> None:
    from sipwarden.config import config_from_dict
    from sipwarden.policy import build_policy

    config = config_from_dict({"dialplan": {"country": "GB", "trunk_prefixes": ["9"]}})
    built = build_policy(config)
    assert built.tollfraud is not None and built.dialplan is not None
    first, _ = built.judge_bytes(invite("00972597562518"), ATTACKER, 5060, T0)
    assert first.kind == "forward"  # one number, once: nothing to say
    reloaded = build_policy(config, previous=built)  # a reload keeps what was counted
    assert reloaded.tollfraud is built.tollfraud and reloaded.dialplan is built.dialplan
    second, _ = reloaded.judge_bytes(invite("9011972597562518"), ATTACKER, 5060, T0 + 5)
    assert (second.kind, second.reason) == ("ban", PREFIX_WALK)
    assert reloaded.bans is not None and reloaded.bans.banned(ATTACKER.host, T0 + 6) is not None
    off = build_policy(config_from_dict({"tollfraud": {"enabled": False}}))
    assert off.tollfraud is None
    assert all(stage.name != "tollfraud" for stage in off.stages)  # no stage: no cost
