"""Known-good sources: the addresses that logged in, for the kernel's lane.

A source is known-good once the backend has said 2xx to a REGISTER of its
that carried credentials (Authorization or Proxy-Authorization): it proved
it receives at its address (it answered the PBX's nonce) and holds an
account's password. Not an INVITE: a PBX that answers 2xx to an INVITE
whatever its credentials (anonymous calls to an IVR) would make the source
of any INVITE carrying an Authorization known-good, spoofed or not; phones
register, so they are learnt all the same. The kernel lets such
sources through before any limit while unknown ones are held to a rate
(``enforce/lane.py``), so a flood from spoofed sources never starves a
phone that has registered. Trusted peers and the allow list need no
learning: the kernel has them from the config.

Operations: ``logged_in(host, now)`` from ``Policy.answer``; ``drain()``
for the daemon's lane keeper, which pushes the batch to the kernel (one
nft call for all that logged in meanwhile, never one per packet);
``unreported`` for what the kernel did not take. Sans-I/O; the clock is
passed in. Nothing is restored after a restart: the kernel kept its
entries, and each source is reported again (renewed) at its next login.

What is reported: a source the first time it logs in, and again once its
last report is older than half of ``timeout`` (the kernel's entry is then
renewed, with the full timeout). A phone that logs in at least that often
never drops out of the kernel's set; one that stops falls out after
``timeout``. Re-registrations in between cost one dict probe.

Bounded: ``max_sources`` sources remembered (the least recently logged in
forgotten first: reported again at its next login) and ``max_pending``
reports waiting for the keeper (beyond that a report is dropped and
counted; that source is reported at its next login). Only real logins
make entries, and a login needs a round trip (the PBX's nonce), so spoofed
sources make none.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

LOGINS: Final = frozenset(("REGISTER",))  # a 2xx to these with credentials (see above)


@dataclass
class KnownGood:
    timeout: float = 7200.0  # seconds a kernel entry lasts after its last report
    max_sources: int = 100_000
    max_pending: int = 10_000
    # called when a report waits and none did before (the keeper wakes)
    on_change: Callable[[], None] | None = None
    # "reported" (new), "renewed", "dropped" (max_pending reached), "forgotten" (max_sources)
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._reported: OrderedDict[str, float] = OrderedDict()  # host -> last reported
        self._pending: dict[str, float] = {}  # host -> expires_at, for the keeper

    def __len__(self) -> int:
        return len(self._reported)

    def logged_in(self, host: str, now: float) -> None:
        """``host`` logged in at ``now``: report it unless a recent report stands."""
        reported = self._reported
        last = reported.get(host)
        if last is not None and now - last < self.timeout / 2:
            reported.move_to_end(host)
            return
        if len(self._pending) >= self.max_pending and host not in self._pending:
            self.counters["dropped"] += 1  # reported at its next login
            return
        self.counters["renewed" if last is not None else "reported"] += 1
        reported[host] = now
        reported.move_to_end(host)
        while len(reported) > self.max_sources:
            reported.popitem(last=False)
            self.counters["forgotten"] += 1
        was_empty = not self._pending
        self._pending[host] = now + self.timeout
        if was_empty and self.on_change is not None:
            self.on_change()

    def known(self, host: str, now: float) -> bool:
        """Whether ``host`` logged in within ``timeout`` (as far as this record knows)."""
        last = self._reported.get(host)
        return last is not None and now - last < self.timeout

    @property
    def pending(self) -> int:
        return len(self._pending)

    def drain(self) -> dict[str, float]:
        """The reports waiting (host -> when its kernel entry should end), and forget them."""
        pending, self._pending = self._pending, {}
        return pending

    def unreported(self, hosts: Iterable[str]) -> None:
        """The kernel did not take these: report them again at their next login."""
        for host in hosts:
            self._reported.pop(host, None)
