"""The periodic analysis: each analyser finds its attack, stays quiet on
phones, and asks (never bans); the Analysis runs them together."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwarden.config import AnalysisConfig, BansConfig, Config, config_from_dict
from sipwarden.observe.analysis import (
    Analysis,
    Campaign,
    Distributed,
    Finding,
    HourOfWeekProfile,
    RegisterNoSuccess,
    Rise,
    Window,
    build_analysis,
    source_countries,
)
from sipwarden.observe.analysis.base import network_of
from sipwarden.observe.events import BAN, LOGIN_FAILED, UNBAN, VERDICT, Event
from sipwarden.observe.schedule import utc_hour_of_week
from sipwarden.values import canonical

NOW = 1_800_000_000.0 - 1_800_000_000.0 % 3600 + 1800  # half past an hour
WEEK = 7 * 24 * 3600.0
EDGE = "198.51.100.1"


def failed(
    source: str, t: float, account: str = "100", *, repeated: int = 0, reason: str = "auth.failed"
) -> Event:
    fields: list[Any] = [("account", account), ("method", "REGISTER"), ("status", 401)]
    if repeated:
        fields.append(("repeated", repeated))
    return Event(t, LOGIN_FAILED, source, reason, tuple(fields))


def verdict(
    source: str, reason: str, ua: str | None = None, kind: str = "drop", t: float = NOW - 60
) -> Event:
    fields = (("verdict", kind), ("user_agent", ua), ("port", 5070), ("transport", "udp"))
    return Event(t, VERDICT, source, reason, fields)


def flow(
    source: str, minute: float, methods: dict[str, int], answers: dict[str, int], **more: Any
) -> dict[str, Any]:
    return {
        "minute": minute,
        "source": source,
        "source_port": 5060,
        "destination": EDGE,
        "destination_port": 5060,
        "transport": "udp",
        "first_seen": minute + 1,
        "last_seen": minute + 2,
        "packets": sum(methods.values()),
        "bytes": 500 * sum(methods.values()),
        "peak_pps": 1,
        "methods": methods,
        "answers": answers,
        "verdicts": more.get("verdicts", {}),
    }


def phones(n: int = 20, minutes: int = 15) -> list[dict[str, Any]]:
    """Phones registering every 60 s: a REGISTER, its 401, the REGISTER with
    credentials and its 200 in each minute's record; one /24 for all."""
    return [
        flow(f"192.0.2.{10 + p}", NOW - 60 * (m + 1), {"REGISTER": 2}, {"401": 1, "200": 1})
        for p in range(n)
        for m in range(minutes)
    ]


def stale_password() -> list[Event]:
    """A phone whose password changed: a few failed logins a minute apart."""
    return [failed("192.0.2.10", NOW - 60 * k, "101") for k in range(3)]


def guessers(count: int = 12, each: int = 3, net: str = "203.0.113") -> list[Event]:
    """``count`` addresses of one /24, each failing ``each`` times (below a
    per-source maxretry of 5), for many accounts."""
    return [
        failed(f"{net}.{10 + i}", NOW - 600 + 40 * k + i, f"{200 + i * each + k}")
        for i in range(count)
        for k in range(each)
    ]


def ordinary() -> Window:
    profile = HourOfWeekProfile(since=NOW - 5 * WEEK)
    for hour in range(5 * 7 * 24):
        profile.add(NOW - 5 * WEEK + hour * 3600, 1)
    return Window(
        now=NOW,
        events=stale_password(),
        flows=phones(),
        profile=profile,
        country=lambda host: "DE",
        known_countries=frozenset({"DE"}),
    )


# --------------------------------------------------------------- the whole


def test_ordinary_phone_traffic_finds_nothing() -> None:
    analysis = build_analysis(Config().analysis, Config().bans)
    assert analysis.names == ["distributed", "register-no-success", "rise", "campaign"]
    assert analysis.run(ordinary()) == []
    assert analysis.errors == {}


def test_the_distributed_guesser_is_found_among_the_phones_and_its_24_asked_for() -> None:
    window = ordinary()
    window = dataclasses.replace(window, events=[*window.events, *guessers()])
    findings = build_analysis(Config().analysis, Config().bans).run(window)
    # 39 failed logins in 15 minutes where one an hour is usual: a rise too
    assert [f.analyser for f in findings] == ["distributed", "rise"]
    finding = findings[0]
    assert finding.target == "203.0.113.0/24"
    assert finding.severity == "critical"
    decision = finding.decision
    assert decision is not None
    assert decision.target == "203.0.113.0/24"
    assert decision.detector == "analysis.distributed"
    assert decision.duration == 3600.0
    assert "12 addresses of 203.0.113.0/24 failed 36 logins" in finding.summary
    assert finding.evidence[0] == "203.0.113.10: 3 failed"


def test_as_dict_is_json() -> None:
    window = dataclasses.replace(ordinary(), events=guessers(), quiet=True)
    finding = build_analysis(Config().analysis, Config().bans).run(window)[0]
    out = json.loads(json.dumps(finding.as_dict()))
    assert out["analyser"] == "distributed"
    assert out["quiet"] is True
    assert out["decision"]["target"] == "203.0.113.0/24"
    assert out["decision"]["duration"] == 3600.0
    assert out["evidence"] == list(finding.evidence)
    assert Finding("rise", "", "s", "info").as_dict()["decision"] is None


def test_quiet_time_raises_a_findings_severity() -> None:
    class Fixed:
        name = "fixed"

        def run(self, window: Window) -> list[Finding]:
            return [Finding("fixed", "", "x", "info"), Finding("fixed", "", "y", "critical")]

    by_day = Analysis([Fixed()]).run(Window(now=NOW))
    at_night = Analysis([Fixed()]).run(Window(now=NOW, quiet=True))
    assert [(f.severity, f.quiet) for f in by_day] == [("info", False), ("critical", False)]
    assert [(f.severity, f.quiet) for f in at_night] == [("warning", True), ("critical", True)]
    kept = Analysis([Fixed()], quiet_raise=False).run(Window(now=NOW, quiet=True))
    assert [f.severity for f in kept] == ["info", "critical"]


def test_a_failing_analyser_is_reported_and_the_others_still_run() -> None:
    class Broken:
        name = "broken"

        def run(self, window: Window) -> list[Finding]:
            raise KeyError("minute")

    analysis = Analysis([Broken(), Distributed()])
    findings = analysis.run(Window(now=NOW, events=guessers()))
    assert [f.analyser for f in findings] == ["distributed"]
    assert analysis.errors == {"broken": "KeyError: 'minute'"}
    assert analysis.counters["broken-errors"] == 1 and analysis.counters["distributed"] == 1


def test_bad_flow_records_lose_nothing_else() -> None:
    bad = [{"source": None}, {"source": "203.0.113.9", "methods": "REGISTER"}, {}, {"source": "*"}]
    flows = [*bad, flow("203.0.113.7", NOW - 60, {"REGISTER": 150}, {"401": 150})]
    findings = build_analysis(Config().analysis, Config().bans).run(Window(now=NOW, flows=flows))
    assert [(f.analyser, f.target) for f in findings] == [("register-no-success", "203.0.113.7")]


def test_build_follows_the_switches_and_the_defaults_agree_with_the_config() -> None:
    config = config_from_dict(
        {"analysis": {"rise": {"enabled": False}, "campaign": {"enabled": False}}}
    ).analysis
    assert build_analysis(config, BansConfig()).names == ["distributed", "register-no-success"]
    off = config_from_dict({"analysis": {"enabled": False}}).analysis
    assert build_analysis(off, BansConfig()).analysers == []
    # each analyser's own defaults are the config's (no drift between them)
    built = build_analysis(AnalysisConfig(), BansConfig()).analysers
    assert built == [Distributed(), RegisterNoSuccess(), Rise(), Campaign()]


# ------------------------------------------------------------ distributed


def test_distributed_needs_enough_sources_and_failures() -> None:
    assert Distributed().run(Window(now=NOW, events=guessers(count=4, each=5))) == []
    assert Distributed().run(Window(now=NOW, events=guessers(count=6, each=3))) == []  # 18 < 20
    (finding,) = Distributed().run(Window(now=NOW, events=guessers(count=6, each=4)))
    assert finding.target == "203.0.113.0/24"


def test_distributed_weighs_summaries_and_counts_enumeration() -> None:
    events = [
        failed(f"203.0.113.{i}", NOW - 100, repeated=4, reason="auth.not-found") for i in range(5)
    ]
    (finding,) = Distributed().run(Window(now=NOW, events=events))
    assert "failed 20 logins" in finding.summary


def test_distributed_ipv6_per_48() -> None:
    events = [failed(f"2001:db8:7:{i}::1", NOW - 100 - i) for i in range(6) for _ in range(4)]
    (finding,) = Distributed().run(Window(now=NOW, events=events))
    assert finding.target == "2001:db8:7::/48"
    assert finding.decision is not None and finding.decision.target == "2001:db8:7::/48"


def test_distributed_is_never_wider_than_the_ban_books_widest() -> None:
    events = guessers(count=3) + guessers(count=3, net="203.0.114")
    (finding,) = Distributed(prefix_v4=16, widest_v4=20, min_sources=5, min_failures=10).run(
        Window(now=NOW, events=events)
    )
    assert finding.target == "203.0.112.0/20"


def test_distributed_spares_a_network_whose_addresses_logged_in() -> None:
    flows = [flow("203.0.113.200", NOW - 120, {"REGISTER": 2}, {"401": 1, "200": 1})]
    (finding,) = Distributed().run(Window(now=NOW, events=guessers(), flows=flows))
    assert finding.decision is None and finding.severity == "warning"
    assert "not banned" in finding.summary
    (asked,) = Distributed(spare_logged_in=False).run(
        Window(now=NOW, events=guessers(), flows=flows)
    )
    assert asked.decision is not None


def test_distributed_does_not_ask_again_for_a_ban_in_force() -> None:
    ban = Event(NOW - 30, BAN, "203.0.113.0/24", "analysis.distributed")
    assert Distributed().run(Window(now=NOW, events=[*guessers(), ban])) == []
    unban = Event(NOW - 10, UNBAN, "203.0.113.0/24", "operator")
    assert len(Distributed().run(Window(now=NOW, events=[*guessers(), ban, unban]))) == 1
    # a ban of a wider network covers it too
    wider = Event(NOW - 30, BAN, "203.0.112.0/20", "operator")
    assert Distributed().run(Window(now=NOW, events=[*guessers(), wider])) == []


def test_distributed_alert_only() -> None:
    (finding,) = Distributed(ban=False).run(Window(now=NOW, events=guessers()))
    assert finding.decision is None


# ------------------------------------------------------ register-no-success


def test_register_heavy_without_success_is_found() -> None:
    flows = [flow("203.0.113.7", NOW - 60 * m, {"REGISTER": 20}, {"401": 20}) for m in range(1, 8)]
    (finding,) = RegisterNoSuccess().run(Window(now=NOW, flows=flows))
    assert finding.target == "203.0.113.7"
    assert finding.decision is None  # alert only by default
    assert "140 REGISTERs (100% of its messages)" in finding.summary
    assert finding.evidence[0] == "answers: 140 × 401"
    (asked,) = RegisterNoSuccess(ban=True, bantime=600).run(Window(now=NOW, flows=flows))
    assert asked.decision is not None
    assert (asked.decision.target, asked.decision.detector, asked.decision.duration) == (
        "203.0.113.7",
        "analysis.register-no-success",
        600,
    )


def test_register_no_success_spares_success_mixed_traffic_and_judged_sources() -> None:
    def run(*flows: dict[str, Any]) -> list[Finding]:
        return RegisterNoSuccess(min_registers=10).run(Window(now=NOW, flows=flows))

    src = "203.0.113.7"
    assert run(flow(src, NOW - 60, {"REGISTER": 20}, {"401": 19, "200": 1})) == []
    assert run(flow(src, NOW - 60, {"REGISTER": 20, "INVITE": 20}, {"401": 40})) == []
    assert (
        run(flow(src, NOW - 60, {"REGISTER": 20}, {}, verdicts={"scan.sipvicious-tag": 20})) == []
    )
    ban = Event(NOW - 5, BAN, src, "rate.register")
    assert (
        RegisterNoSuccess(min_registers=10).run(
            Window(
                now=NOW, events=[ban], flows=[flow(src, NOW - 60, {"REGISTER": 20}, {"401": 20})]
            )
        )
        == []
    )
    # its flows over several ports and minutes add up
    assert len(run(*(flow(src, NOW - 60 * m, {"REGISTER": 4}, {"403": 4}) for m in range(3)))) == 1


# ------------------------------------------------------------------- rise


def steady_profile(per_hour: float, weeks: int = 4) -> HourOfWeekProfile:
    profile = HourOfWeekProfile(since=NOW - weeks * WEEK - 3600)
    for hour in range(weeks * 7 * 24 + 1):
        profile.add(NOW - weeks * WEEK - 3600 + hour * 3600, per_hour)
    return profile


def test_a_rise_in_failed_logins_against_the_hour_of_the_week() -> None:
    events = [failed(f"198.18.{i}.1", NOW - 10 * i) for i in range(40)]
    window = Window(now=NOW, events=events, span=900, profile=steady_profile(10))
    (finding,) = Rise().run(window)
    assert finding.analyser == "rise" and finding.target == "" and finding.decision is None
    assert "40 failed logins from 40 addresses within 15 min (160 an hour; usually 10" in (
        finding.summary
    )
    assert finding.severity == "critical"  # 16 times the usual level
    # the same count where 60 an hour is usual is no rise
    assert Rise().run(dataclasses.replace(window, profile=steady_profile(60))) == []


def test_a_rise_needs_the_minimum_count_and_without_a_baseline_the_minimum_decides() -> None:
    few = [failed("198.18.0.1", NOW - 10 * i) for i in range(4)]  # 16 an hour
    assert Rise().run(Window(now=NOW, events=few, span=900, profile=steady_profile(0))) == []
    many = [failed("198.18.0.1", NOW - 10 * i) for i in range(6)]  # 24 an hour, no history
    (finding,) = Rise().run(Window(now=NOW, events=many, span=900))
    assert "no usual level yet" in finding.summary and finding.severity == "warning"
    # only the window's last hour counts, as a count an hour
    old = [failed("198.18.0.1", NOW - 3700 - i) for i in range(50)]
    assert Rise().run(Window(now=NOW, events=old, span=7200)) == []


def test_the_hour_of_the_week_is_the_callers() -> None:
    profile = HourOfWeekProfile(since=NOW - 2 * WEEK - 3600)
    here = utc_hour_of_week(NOW)
    for week in (1, 2):
        profile.add(NOW - week * WEEK, 100)  # a busy hour, each week
    events = [failed("198.18.0.1", NOW - i) for i in range(50)]
    window = Window(now=NOW, events=events, span=900, profile=profile)
    assert Rise().run(dataclasses.replace(window, hour_of_week=here)) == []  # 200/h usual 100
    assert len(Rise().run(dataclasses.replace(window, hour_of_week=(here + 1) % 168))) == 1


def test_new_countries() -> None:
    where = {"203.0.113.1": "FR", "203.0.113.2": "CN", "203.0.113.3": "RU", "192.0.2.10": "DE"}
    events = [verdict(h, "scan.sipvicious-tag") for h in where]
    window = Window(now=NOW, events=events, country=where.get, known_countries=frozenset({"DE"}))
    (finding,) = Rise().run(window)
    assert "3 countries not seen before" in finding.summary
    assert source_countries(window) == {
        "FR": {"203.0.113.1"},
        "CN": {"203.0.113.2"},
        "RU": {"203.0.113.3"},
        "DE": {"192.0.2.10"},
    }
    assert Rise(new_countries=4).run(window) == []
    assert Rise().run(dataclasses.replace(window, known_countries=None)) == []  # a first run
    assert Rise(new_countries=0).run(window) == []


# --------------------------------------------------------------- campaign


def test_a_campaign_of_one_tool_fingerprint() -> None:
    events = [verdict(f"198.18.{i}.9", "scan.sipvicious-tag") for i in range(10)]
    (finding,) = Campaign().run(Window(now=NOW, events=events))
    assert "10 addresses sharing the tool fingerprint scan.sipvicious-tag" in finding.summary
    assert finding.decision is None
    assert Campaign().run(Window(now=NOW, events=events[:9])) == []


def test_a_campaign_of_one_user_agent_and_what_is_no_campaign() -> None:
    events = [verdict(f"198.18.{i}.9", "rate.register", "pplsip", kind="ban") for i in range(12)]
    (finding,) = Campaign().run(Window(now=NOW, events=events))
    assert "User-Agent 'pplsip'" in finding.summary
    # phones of one model whose OPTIONS keep-alives are dropped: no campaign
    phones_ = [verdict(f"192.0.2.{i}", "options.untrusted", "Yealink SIP-T46U") for i in range(30)]
    assert Campaign().run(Window(now=NOW, events=phones_)) == []
    # a trusted peer's allowed messages are no verdict against anyone
    allowed = [verdict(f"192.0.2.{i}", "ua.sipcli", "sipcli", kind="allow") for i in range(30)]
    assert Campaign().run(Window(now=NOW, events=allowed)) == []


def test_a_campaign_can_ask_a_ban_per_source_bounded_and_once_each() -> None:
    events = [
        verdict(f"198.18.{i}.9", "ua.friendly-scanner", "friendly-scanner") for i in range(15)
    ]
    events.append(Event(NOW - 1, BAN, "198.18.0.9", "ua.friendly-scanner"))
    findings = Campaign(ban=True, max_decisions=10).run(Window(now=NOW, events=events))
    alerts = [f for f in findings if f.decision is None]
    asks = [f.decision for f in findings if f.decision is not None]
    assert len(alerts) == 2  # the fingerprint and the User-Agent
    assert len(asks) == 10 and len({d.target for d in asks}) == 10
    assert "198.18.0.9" not in {d.target for d in asks}  # already banned
    assert all(d.detector == "analysis.campaign" and d.duration == "progressive" for d in asks)


# ---------------------------------------------------------------- profile


def test_the_profile_is_the_mean_of_complete_weeks_before_the_current_hour() -> None:
    profile = HourOfWeekProfile(weeks=4)
    how = utc_hour_of_week(NOW)
    assert profile.usual(how, NOW) is None
    profile.add(NOW - 3 * WEEK, 30)
    profile.add(NOW - 2 * WEEK, 60)
    profile.add(NOW - 1 * WEEK + 1, 90)
    profile.add(NOW, 1000)  # the hour under way is not its own baseline
    assert profile.weeks_seen(NOW) == 3
    assert profile.usual(how, NOW) == 60.0
    assert profile.usual((how + 1) % 168, NOW) == 0.0
    week = profile.week(NOW)
    assert week is not None and len(week) == 168 and week[how] == 60.0 and sum(week) == 60.0


def test_the_profile_is_bounded_and_round_trips() -> None:
    profile = HourOfWeekProfile(weeks=2)
    for hour in range(6 * 7 * 24):
        profile.add(NOW - 6 * WEEK + hour * 3600, 1)
    assert len(profile) <= 2 * 168 + 1
    profile.add(NOW - 5 * WEEK, 99)  # older than what is kept: ignored
    assert len(profile) <= 2 * 168 + 1
    data = json.loads(json.dumps(profile.as_dict()))
    again = HourOfWeekProfile.from_dict(data)
    assert again.hours == profile.hours and again.since == profile.since
    assert again.usual(5, NOW) == profile.usual(5, NOW) == 1.0
    with pytest.raises(ValueError, match="not an hour-of-week profile"):
        HourOfWeekProfile.from_dict({"hours": [["x"]]})


def test_the_profile_from_stored_rows() -> None:
    rows = [(NOW - 2 * WEEK + 5, 3.0), (NOW - 2 * WEEK + 10, 2.0), (NOW - WEEK, 1.0)]
    profile = HourOfWeekProfile.from_rows(rows, weeks=4, since=NOW - 3 * WEEK)
    assert profile.weeks_seen(NOW) == 3
    assert profile.usual(utc_hour_of_week(NOW), NOW) == 2.0  # (5 + 1) / 3


@pytest.mark.parametrize(
    ("host", "v4", "v6", "expected"),
    [
        ("203.0.113.77", 24, 48, "203.0.113.0/24"),
        ("203.0.113.77", 32, 48, "203.0.113.77"),
        ("::ffff:203.0.113.77", 24, 48, "203.0.113.0/24"),
        ("2001:db8:7:1::1", 24, 48, "2001:db8:7::/48"),
        ("2001:DB8:7:1::1", 24, 128, "2001:db8:7:1::1"),
        ("::1", 24, 48, "::/48"),
        ("::5", 24, 128, "::5"),
        ("not an address", 24, 48, None),
    ],
)
def test_network_of_writes_what_canonical_writes(host, v4, v6, expected) -> None:
    assert network_of(host, v4, v6) == expected
    if expected is not None:
        assert canonical(expected) == expected


@given(
    st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    st.integers(8, 32),
    st.integers(16, 128),
)
def test_network_of_agrees_with_ipaddress(host: str, v4: int, v6: int) -> None:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = v4 if address.version == 4 else v6
    assert network_of(host, v4, v6) == canonical(f"{address}/{prefix}")
