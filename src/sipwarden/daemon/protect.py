"""What no ban may cut off: this machine's own addresses and its PBX.

A ban on the edge's own address, on the PBX behind it, or on an address the
machine talks to itself through drops the traffic the edge exists to
carry; no detector, rule, feed or operator request may make one. The ban
book refuses them (``BanBook.protect``, with loopback and the unspecified
address always), and the feeds' kernel sets leave them out.

Each address is protected alone (a /32 or /128), not the network it sits
in: a machine on 127.0.0.1/8 keeps the rest of 127.0.0.0/8 bannable (the
demo and the tests give each simulated attacker one of them). The
machine's addresses are read once, at start (``ip -j addr``); one added
later is protected from the next start.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess

from ..config import Config
from ..values import Network

log = logging.getLogger("sipwarden.bans")
WILDCARDS = ("0.0.0.0", "::")


def protected_networks(config: Config) -> list[tuple[Network, str]]:
    """(network, why) for every address of this machine and the PBX."""
    protected: dict[Network, str] = {}  # the first reason given for each

    def add(address: str, why: str) -> None:
        try:
            net = ipaddress.ip_network(address.strip("[]").split("%", 1)[0])
        except ValueError:
            return
        protected.setdefault(net, why)

    backend = config.edge.backend
    if config.edge.listen:  # no edge: no backend (host mode's PBX is this machine)
        add(
            backend.host,
            f"the PBX: edge.backend = {backend.transport}:{backend.host}:{backend.port}",
        )
    for ep in config.edge.listen:
        if ep.host not in WILDCARDS:
            add(ep.host, f"the edge's own address: edge.listen {ep.host}")
    for address in machine_addresses():
        add(address, "an address of this machine")
    return list(protected.items())


def machine_addresses() -> list[str]:
    """Every address on this machine's interfaces (in its network namespace)."""
    try:
        found = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
        )
        interfaces = json.loads(found.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning(
            "cannot read this machine's addresses (%s): only the configured ones are protected"
            " from bans (apt-get install iproute2)",
            exc,
        )
        return []
    return [
        info["local"]
        for interface in interfaces
        for info in interface.get("addr_info", ())
        if isinstance(info.get("local"), str)
    ]
