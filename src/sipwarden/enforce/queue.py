"""Host mode's rules in the kernel: the PBX's SIP packets sent to NFQUEUE.

Inbound, the PBX's ports (UDP and TCP; the TLS ports over TCP) go to queue
``queue``, at the input hook: after the bans', feeds' and lane's drops of
``nftables.py`` and ``lane.py`` (prerouting, priority raw and raw + 1), so
a banned or listed source and a flood never reach the queue. Outbound, what
the PBX sends from its ports goes to queue ``queue + 1`` (its answers are
read, and may be rewritten). ``fail_open``: the rules carry ``bypass`` (no
reader: the packet is accepted); without it a packet nobody reads is
dropped. A TCP packet handed back with the verdict ``repeat`` and the mark
``RESET_MARK`` goes through the rules again and is refused with a TCP reset:
host mode's way of closing a connection it judged hostile.

Two ways in, said at start: nft's ``queue`` statement, in sipwarden's own
table (chains ``host_in`` and ``host_out``), when the kernel has it
(CONFIG_NFT_QUEUE; found by trying it in a scratch table), else the
iptables NFQUEUE target (``--queue-bypass``) in chains ``<table>_in`` and
``<table>_out`` of iptables' and ip6tables' filter tables, jumped to first
from INPUT and OUTPUT (Debian: apt-get install iptables).

The rules stay when sipwarden stops (with fail closed, that is the point);
``remove`` takes them away (`sipwarden firewall flush`). Bounds: a handful of
nft or iptables calls at start, each ``COMMAND_TIMEOUT`` at most.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .nftables import COMMAND_TIMEOUT, EnforcerError

log = logging.getLogger("sipwarden.enforce")

RESET_MARK: Final = 0x5357F00D  # a TCP packet handed back with this mark is refused with a reset
Kernel = Literal["nftables", "iptables"]


@dataclass(frozen=True)
class QueueSettings:
    """What host mode queues (``[host]``)."""

    table: str  # sipwarden's nft table; the iptables chains are named after it
    queue: int  # the PBX's inbound packets; queue + 1: what it sends
    udp_ports: tuple[int, ...]
    tcp_ports: tuple[int, ...]  # the SIP ports and the TLS ones
    answer_tcp_ports: tuple[int, ...]  # the TCP ports whose answers are read (not TLS)
    fail_open: bool


def nft_lines(s: QueueSettings) -> list[str]:
    """The nft statements of the rules (in sipwarden's table, made if absent)."""
    t = f"inet {s.table}"
    bypass = " bypass" if s.fail_open else ""
    lines = [f"add table {t}"]
    for chain, hook in (("host_in", "input"), ("host_out", "output")):
        lines += [
            f"add chain {t} {chain} {{ type filter hook {hook} priority filter; policy accept; }}",
            f"flush chain {t} {chain}",
        ]
    lines.append(
        f"add rule {t} host_in meta mark {RESET_MARK:#x} meta l4proto tcp reject with tcp reset"
    )
    for proto, ports, chain, direction, queue in (
        ("udp", s.udp_ports, "host_in", "dport", s.queue),
        ("tcp", s.tcp_ports, "host_in", "dport", s.queue),
        ("udp", s.udp_ports, "host_out", "sport", s.queue + 1),
        ("tcp", s.answer_tcp_ports, "host_out", "sport", s.queue + 1),
    ):
        if ports:
            listed = ", ".join(str(p) for p in ports)
            lines.append(
                f"add rule {t} {chain} {proto} {direction} {{ {listed} }} queue num {queue}{bypass}"
            )
    return lines


def nft_removal(table: str) -> list[str]:
    t = f"inet {table}"
    lines = []
    for chain in ("host_in", "host_out"):
        lines += [f"add table {t}", f"add chain {t} {chain}", f"delete chain {t} {chain}"]
    return lines


def iptables_restore(s: QueueSettings) -> str:
    """The ``iptables-restore --noflush`` input: the two chains, rebuilt."""
    chain_in, chain_out = f"{s.table}_in", f"{s.table}_out"
    bypass = " --queue-bypass" if s.fail_open else ""
    lines = ["*filter", f":{chain_in} - [0:0]", f":{chain_out} - [0:0]"]
    lines.append(
        f"-A {chain_in} -p tcp -m mark --mark {RESET_MARK:#x} -j REJECT --reject-with tcp-reset"
    )
    for proto, ports, chain, direction, queue in (
        ("udp", s.udp_ports, chain_in, "dports", s.queue),
        ("tcp", s.tcp_ports, chain_in, "dports", s.queue),
        ("udp", s.udp_ports, chain_out, "sports", s.queue + 1),
        ("tcp", s.answer_tcp_ports, chain_out, "sports", s.queue + 1),
    ):
        if ports:
            listed = ",".join(str(p) for p in ports)
            lines.append(
                f"-A {chain} -p {proto} -m multiport --{direction} {listed}"
                f" -j NFQUEUE --queue-num {queue}{bypass}"
            )
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class QueueRules:
    """Installs and removes the rules (see the module doc). ``command_prefix``
    runs the commands through another, e.g. ``ip netns exec NS``."""

    def __init__(
        self,
        settings: QueueSettings,
        kernel: Literal["auto", "nftables", "iptables"] = "auto",
        *,
        command_prefix: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.kernel = kernel
        self.command_prefix = tuple(command_prefix)

    async def install(self) -> Kernel:
        """Put the rules in place; which way was used."""
        way = self.kernel
        if way == "auto":
            way = "nftables" if await self.nft_has_queue() else "iptables"
        if way == "nftables":
            rc, err = await self._run(["nft", "-f", "-"], "\n".join(nft_lines(self.settings)))
            if rc:
                raise EnforcerError(f"nft refused host mode's queue rules: {err}")
            return "nftables"
        s = self.settings
        for tool in ("iptables", "ip6tables"):
            rc, err = await self._run([f"{tool}-restore", "--noflush"], iptables_restore(s))
            if rc:
                raise EnforcerError(
                    f"{tool}-restore refused host mode's queue rules: {err}"
                    " (apt-get install iptables; run as root)"
                )
            for hook, chain in (("INPUT", f"{s.table}_in"), ("OUTPUT", f"{s.table}_out")):
                rc, _ = await self._run([tool, "-w", "-C", hook, "-j", chain])
                if rc:  # not yet jumped to: first in the hook
                    rc, err = await self._run([tool, "-w", "-I", hook, "1", "-j", chain])
                    if rc:
                        raise EnforcerError(f"{tool} refused the jump to {chain}: {err}")
        return "iptables"

    async def remove(self) -> None:
        """Take the rules away, both ways (whichever was used); absent ones are fine."""
        await self._run(["nft", "-f", "-"], "\n".join(nft_removal(self.settings.table)))
        for tool in ("iptables", "ip6tables"):
            for hook, chain in (
                ("INPUT", f"{self.settings.table}_in"),
                ("OUTPUT", f"{self.settings.table}_out"),
            ):
                for _ in range(8):  # every jump (an operator may have added one)
                    rc, _err = await self._run([tool, "-w", "-D", hook, "-j", chain])
                    if rc:
                        break
                await self._run([tool, "-w", "-F", chain])
                await self._run([tool, "-w", "-X", chain])

    async def nft_has_queue(self) -> bool:
        """Whether nft's ``queue`` statement works here (CONFIG_NFT_QUEUE):
        tried in a scratch table, made and deleted in one transaction."""
        t = f"inet {self.settings.table}_probe"
        lines = [
            f"add table {t}",
            f"add chain {t} probe {{ type filter hook input priority filter; }}",
            f"add rule {t} probe udp dport 9 queue num {self.settings.queue} bypass",
            f"delete table {t}",
        ]
        rc, _ = await self._run(["nft", "-f", "-"], "\n".join(lines))
        return rc == 0

    async def _run(self, argv: Sequence[str], stdin: str | None = None) -> tuple[int, str]:
        full = [*self.command_prefix, *argv]
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            return 127, f"{argv[0]} not found"
        try:
            _, err = await asyncio.wait_for(
                proc.communicate(None if stdin is None else (stdin + "\n").encode()),
                COMMAND_TIMEOUT,
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 124, f"{argv[0]} took over {COMMAND_TIMEOUT:.0f} s"
        text = err.decode(errors="replace").strip()
        return proc.returncode or 0, text.splitlines()[0] if text else ""
