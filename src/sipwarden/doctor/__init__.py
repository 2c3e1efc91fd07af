"""`sipwarden doctor`: is this machine set up for sipwarden, and if not, what to do.

``examine`` runs every check in order and returns one ``Result`` per line
(``check``, ``status`` pass, fail or skip, ``detail``, ``fix``):

1. the config is valid (its error names the key; nothing else is tried
   without a valid config);
2. each ``edge.listen`` port is free, or held by the sipwarden running
   with this config (its control socket answers);
3. the PBX (``edge.backend``) answers an OPTIONS sent from the edge's side,
   over its transport, within the timeout;
4. nftables, when ``[firewall] enforcer = "nftables"``: the ``nft`` binary,
   CAP_NET_ADMIN in the effective set, the kernel (a scratch table), and
   NFQUEUE when host mode is on (``probes.host_mode``: the hook for issue
   17's ``[host]``);
5. the store takes writes;
6. the feeds answer and take their keys (APIBAN, URL feeds);
7. no bypass: the PBX's SIP port, on this machine, listens on a public
   address only where the firewall keeps strangers out;
8. the RTP range is let in by the local firewall.

The judgements are pure (``judge.py``: capabilities, /proc/net, the
nftables ruleset); the probes (``probes.py``) read the machine, each
bounded by a timeout. ``sipwarden doctor`` exits 0 only when no check
fails.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, load_config
from .judge import Result, failed, passed, skipped
from .probes import TIMEOUT, bypass, feeds, nftables, pbx, ports, rtp, rtp_range, store, summary

RTP_PORTS = (10000, 20000)  # Asterisk's rtp.conf default, FreeSWITCH's 16384-32768 differs


def examine(
    config_file: str | Path,
    *,
    rtp_ports: tuple[int, int] = RTP_PORTS,
    timeout: float = TIMEOUT,
) -> list[Result]:
    """Every check, in order (see the module doc)."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        detail = " ".join(str(exc).split("\n"))
        return [
            failed(
                "config",
                detail,
                "correct the key named above (the message says what would be valid);"
                " nothing else was checked",
            )
        ]
    results = [passed("config", f"{config_file}: valid")]
    edge = bool(config.edge.listen)  # (issue 17: no [edge], or listen = [], is no edge)
    no_edge = "no edge (edge.listen is empty): nothing stands in front of a PBX"
    results += ports(config)
    results.append(pbx(config, timeout) if edge else skipped("pbx", no_edge))
    results += nftables(config)
    results.append(store(config))
    results += feeds(config, timeout)
    results.append(bypass(config) if edge else skipped("bypass", no_edge))
    results.append(rtp(rtp_ports))
    return results


__all__ = ["RTP_PORTS", "Result", "examine", "rtp_range", "summary"]
