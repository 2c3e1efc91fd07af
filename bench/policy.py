"""µs per message for the policy stage (``Policy.judge``) on its own.

Loaded: the whole built-in pack plus 100 operator rules of the kinds
operators write (toll-fraud destination prefixes, blocked From users and
User-Agents, source networks, a few regexes and multi-field rules). For each
message the figure is ``peek() + judge()`` minus ``peek()`` alone, so it is
what the policy adds on top of the hot path. Messages:
- clean REGISTER, INVITE (SDP) and OPTIONS from phones: every rule is in play
  and none matches (the costliest case: nothing stops the walk early);
- scanner messages (nmap's probe, svmap, svcrack): a rule matches and decides.
Also shown: the same with the pack alone, and with no rules at all (the
pipeline's fixed stages: trusted-peer lookup, sanity checks).

Run: .venv/bin/python bench/policy.py [--seconds S]
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from pathlib import Path

from messages import INVITE, OPTIONS, REGISTER  # bench/ is on sys.path when run as a script
from sipwarden.config import PolicyConfig
from sipwarden.policy import Policy, rules_policy
from sipwarden.sip import peek
from sipwarden.sip.accel import SPEEDUPS
from sipwarden.values import Peer

SCANNERS = Path(__file__).resolve().parent.parent / "tests" / "data" / "scanners"
PHONE = Peer("udp", "192.0.2.10", 5060)


def operator_rules() -> list[dict[str, object]]:
    """100 rules in the shapes operators write them."""
    return (
        # premium-rate and fraud destinations
        [{"id": f"dest-{i}", "match": {"ruri.user": {"prefix": f"00{880 + i}"}}} for i in range(40)]
        # retired or abused extensions
        + [{"id": f"user-{i}", "match": {"from.user": f"{7000 + i}"}} for i in range(25)]
        # softphones the operator does not allow
        + [
            {"id": f"ua-{i}", "match": {"header.user-agent": {"contains": f"badphone{i}"}}}
            for i in range(15)
        ]
        # networks that never call us
        + [{"id": f"net-{i}", "match": {"source": {"in": [f"198.18.{i}.0/24"]}}} for i in range(10)]
        # regexes on the dialled number
        + [
            {"id": f"rx-{i}", "match": {"ruri.user": {"regex": f"^\\+?{i}{{3}}[0-9]+$"}}}
            for i in range(5)
        ]
        # several fields at once
        + [
            {
                "id": f"combo-{i}",
                "match": {"method": "INVITE", "to.user": f"{9000 + i}", "transport": "udp"},
            }
            for i in range(5)
        ]
    )


def per_message(policy: Policy, data: bytes, seconds: float) -> float:
    """µs that judge() adds to peek() for one message."""

    def both() -> object:
        return policy.judge(peek(data), PHONE, 5060)

    def alone() -> object:
        return peek(data)

    def best(fn: object) -> float:
        timer = timeit.Timer(fn)  # type: ignore[arg-type]
        n, _ = timer.autorange()
        repeats = max(3, int(seconds / max(timer.timeit(n), 1e-3)))
        return min(timer.repeat(repeats, n)) / n * 1e6

    return best(both) - best(alone)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()
    configs = {
        "pack + 100 rules": PolicyConfig(options="forward", rules=operator_rules()),
        "pack only": PolicyConfig(options="forward"),
        "no rules": PolicyConfig(options="forward", pack=False),
    }
    messages = {
        "REGISTER": REGISTER,
        "INVITE (SDP)": INVITE,
        "OPTIONS": OPTIONS,
        "nmap probe": (SCANNERS / "nmap_7.93_sV_SIPOptions_udp.sip").read_bytes(),
        "svmap": (SCANNERS / "svmap_0.3.8_OPTIONS.sip").read_bytes(),
        "svcrack guess": (SCANNERS / "svcrack_0.3.8_REGISTER_auth_pw100.sip").read_bytes(),
    }
    print(
        f"policy stage, µs per message on top of peek(); Python {platform.python_version()}, "
        f"C speedups {'on' if SPEEDUPS else 'off'}"
    )
    print(f"{'':18}" + "".join(f"{name:>15}" for name in messages))
    for label, config in configs.items():
        policy = rules_policy(config)
        row = [per_message(policy, data, args.seconds) for data in messages.values()]
        print(f"{label:18}" + "".join(f"{v:>15.2f}" for v in row), flush=True)
        if label == "pack + 100 rules":
            verdicts = [policy.judge(peek(d), PHONE, 5060) for d in messages.values()]
            print(
                f"{'  verdicts':18}"
                + "".join(f"{(v.reason or v.kind)[:14]:>15}" for v in verdicts),
                flush=True,
            )
            print(f"  ({len(policy.rules.rules)} rules loaded)")


if __name__ == "__main__":
    sys.exit(main())
