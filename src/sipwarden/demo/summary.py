"""The demo's summary: what happened, as one JSON-able dict, and what did
not behave as it should (``problems``, in words; empty when all is well).

Every figure comes from the scenario's records and the running edge (its
verdict counters, its ban store, its REST API); nothing is assumed. The
dict is what ``--json`` prints and what the renderer's last part reads.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..edge import Edge
from .cast import ENUMERATED, ENUMERATOR, GUESSER, PHONE, PHONE_USER, REALM, USERS

if TYPE_CHECKING:
    from ..api import ApiServer
    from ..daemon.core import Daemon
    from .scenario import Scenario


def summarise(
    scenario: Scenario,
    daemon: Daemon,
    api: ApiServer | None,
    pbx_port: int,
    rows: list[dict[str, Any]],
    from_api: list[dict[str, Any]] | str,
) -> dict[str, Any]:
    res = scenario.results
    in_force = {row["ip"]: row for row in rows}

    def attacker(host: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        answers = Counter(str(r["answer"]) for r in records if r["answer"] is not None)
        return {
            "source": host,
            "sent": len(records),
            "answers": dict(answers),
            "unanswered": sum(1 for r in records if r["answer"] is None),
            "banned": host in in_force,
            "detector": in_force[host]["detector"] if host in in_force else None,
            "reason": in_force[host]["reason"] if host in in_force else None,
            "requests": records,
        }

    enum = attacker(ENUMERATOR, res.enumeration)
    enum["users"] = list(ENUMERATED)
    enum["pbx_404s_made_uniform"] = sum(1 for r in res.enumeration if r["pbx_404_made_uniform"])
    guess = attacker(GUESSER, res.guessing)
    guess["user"] = PHONE_USER
    guess["found_password"] = any(r["answer"] == 200 for r in res.guessing)
    guess["real_password_reached_pbx"] = any(
        r["real_password"] and r["answer"] is not None for r in res.guessing
    )
    phone = {
        "source": PHONE,
        "user": PHONE_USER,
        "attempts": len(res.phone),
        "registered": sum(1 for r in res.phone if r["registered"]),
        "times": res.phone,
    }
    edge = daemon.mode(Edge)
    summary: dict[str, Any] = {
        "edge": {
            "listen": [str(ep) for ep in edge.bound],
            "backend": str(daemon.config.edge.backend),
            "rules": len(edge.policy.rules.rules),
        },
        "pbx": {"listen": f"udp:127.0.0.1:{pbx_port}", "realm": REALM, "users": sorted(USERS)},
        "api": {
            "url": None if api is None else f"{api.url}/api/v1",
            "answered": isinstance(from_api, list),
            "bans": len(from_api) if isinstance(from_api, list) else None,
            "error": None if isinstance(from_api, list) else from_api,
        },
        # the dashboard at / on the API's listener
        "dashboard": None if api is None else f"{api.url}/",
        "scanners": res.scanners,
        "enumerator": enum,
        "guesser": guess,
        "phone": phone,
        "bans": rows,
        "verdicts": dict(edge.policy.counters.most_common()),
        "edge_counters": dict(sorted(edge.counters.items())),
        "seconds": round(time.monotonic() - res.started, 2),
    }
    summary["problems"] = problems(summary)
    summary["ok"] = not summary["problems"]
    return summary


def problems(summary: dict[str, Any]) -> list[str]:
    """What did not behave as it should, in words (empty: all is well)."""
    found = [
        f"{probe['tool']} ({probe['probe']}) got an answer"
        for probe in summary["scanners"]
        if probe["answers"]
    ]
    enum, guess, phone = summary["enumerator"], summary["guesser"], summary["phone"]
    if not enum["banned"]:
        found.append(f"the enumerator {enum['source']} was not banned")
    elif not str(enum["detector"]).startswith("enum."):
        found.append(f"the enumerator was banned by {enum['detector']}, not for enumeration")
    if "404" in enum["answers"]:
        found.append("the enumerator saw a 404: the PBX's user list leaked")
    if not guess["banned"]:
        found.append(f"the password guesser {guess['source']} was not banned")
    elif guess["detector"] != "auth.brute-force":
        found.append(
            f"the password guesser was banned by {guess['detector']}, not auth.brute-force"
        )
    if guess["found_password"]:
        found.append(f"the password guesser found user {guess['user']}'s password")
    if phone["registered"] < phone["attempts"] or not phone["attempts"]:
        failed = [t["problem"] for t in phone["times"] if not t["registered"]]
        found.append(
            f"the phone registered {phone['registered']} of {phone['attempts']} times"
            + (f" ({failed[0]})" if failed else "")
        )
    if phone["source"] in {row["ip"] for row in summary["bans"]}:
        found.append("the phone's address was banned")
    api = summary["api"]
    if not api["answered"]:
        found.append(f"the API did not answer: {api['error']}")
    return found
