"""The nftables enforcer against the real kernel, inside a network namespace
the test creates (every nft and conntrack call goes through
``ip netns exec``): the host's own ruleset is never touched.

The point of it all is the last test: a banned source's established UDP
flow stops at once and its conntrack entry is gone (a drop after
``ct state established accept`` in the same chain would let it go on)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from sipwarden.enforce import EnforcerError, NftablesEnforcer, nftables
from sipwarden.values import Ban, Change

from ..conftest import need
from ..edge.netns import Namespace, namespace

TABLE = "sipwarden"


async def then_stop(e, work):
    """Run ``work``, then let the enforcer's conntrack clean-ups finish
    (they run after apply() returns, and asyncio.run would cancel them)."""
    result = await work
    await e.stop()
    return result


async def settled(e, changes, now):
    """apply(), then wait for its conntrack clean-up (which runs after it)."""
    await e.apply(changes, now)
    await e.stop()


def ban(target: str, now: float, seconds: float | None) -> Ban:
    return Ban(target, "test", "test", now, None if seconds is None else now + seconds)


def add(target: str, now: float, seconds: float | None = None) -> Change:
    return Change("add", ban(target, now, seconds))


def remove(target: str) -> Change:
    return Change("remove", ban(target, 0.0, None))


@pytest.fixture
def ns() -> Iterator[Namespace]:
    need(os.geteuid() == 0, "nftables needs root")
    need(shutil.which("nft") is not None, "nftables is not installed (apt-get install nftables)")
    with namespace() as created:
        yield created


def enforcer(ns: Namespace, **options) -> NftablesEnforcer:
    return NftablesEnforcer(table=TABLE, command_prefix=ns.command(), **options)


def listing(ns: Namespace) -> list[dict]:
    out = subprocess.run(
        ns.command("nft", "-j", "list", "table", "inet", TABLE),
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return json.loads(out)["nftables"]


def close_to(found: dict[str, float | None], expected: dict[str, float | None]) -> bool:
    """Same targets; seconds left within 2 s (nft -j prints whole seconds)."""
    if found.keys() != expected.keys():
        return False
    for key, want in expected.items():
        got = found[key]
        if (got is None) != (want is None):
            return False
        if got is not None and want is not None and not want - 2 <= got <= want:
            return False
    return True


def test_start_creates_the_table_once(ns):
    e = enforcer(ns, ports=[("udp", 5060), ("tcp", 5060), ("tls", 5061)])
    now = time.time()
    asyncio.run(e.start([ban("192.0.2.7", now, 600)], now))
    asyncio.run(e.start([ban("192.0.2.7", now, 600)], now))  # a restart
    objects = listing(ns)
    sets = {o["set"]["name"]: o["set"] for o in objects if "set" in o}
    assert {name: (s["type"], s["flags"]) for name, s in sets.items()} == {
        "ban4": ("ipv4_addr", ["timeout"]),
        "ban6": ("ipv6_addr", ["timeout"]),
        "net4": ("ipv4_addr", ["interval", "timeout"]),
        "net6": ("ipv6_addr", ["interval", "timeout"]),
        "feed4": ("ipv4_addr", ["interval", "timeout"]),
        "feed6": ("ipv6_addr", ["interval", "timeout"]),
        # the drop counts per source (drops.py): nft -j shows "dynamic" as no flag
        "drops4": ("ipv4_addr", ["timeout"]),
        "drops6": ("ipv6_addr", ["timeout"]),
    }
    chains = {o["chain"]["name"]: o["chain"] for o in objects if "chain" in o}
    assert set(chains) == {"prerouting", "dropped4", "dropped6"}
    chain = chains["prerouting"]
    assert (chain["hook"], chain["prio"], chain["type"]) == ("prerouting", -300, "filter")
    rules = [o["rule"] for o in objects if "rule" in o]
    # one per set, and two per counting chain, not duplicated by the second start
    assert len(rules) == 6 + 2 * 2
    text = subprocess.run(
        ns.command("nft", "list", "chain", "inet", TABLE, "prerouting"),
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    matches = [
        set(line.split("th dport { ")[1].split(" }")[0].split(", "))
        for line in text.splitlines()
        if "saddr @" in line and "counter" in line and " jump dropped" in line
    ]
    assert matches == [{"udp . 5060", "tcp . 5060", "tcp . 5061"}] * 6, text  # tls is tcp
    assert close_to(asyncio.run(e.elements()), {"192.0.2.7": 600})
    assert e.counters["batches"] == 2


def test_add_and_remove_addresses_and_networks(ns):
    e = enforcer(ns)
    now = time.time()

    async def scenario() -> None:
        await e.start([], now)
        await e.apply(
            [
                add("192.0.2.7", now, 600),
                add("2001:db8::1", now),  # permanent
                add("10.0.0.0/8", now, 100),
                add("2001:db8:1::/48", now),
                add("203.0.113.0/24", now, 3000),
                add("198.51.100.1", now - 700, 600),  # already over: skipped
            ],
            now,
        )
        assert close_to(
            await e.elements(),
            {
                "192.0.2.7": 600,
                "2001:db8::1": None,
                "10.0.0.0/8": 100,
                "2001:db8:1::/48": None,
                "203.0.113.0/24": 3000,
            },
        )
        assert e.counters["batches"] == 2 and e.counters["elements-skipped"] == 1
        # a new add of a present element replaces its timeout, shorter, longer or none
        await e.apply(
            [
                add("192.0.2.7", now, 30),
                add("10.0.0.0/8", now, 5000),
                add("203.0.113.0/24", now),
                add("2001:db8::1", now, 60),
            ],
            now,
        )
        assert close_to(
            await e.elements(),
            {
                "192.0.2.7": 30,
                "2001:db8::1": 60,
                "10.0.0.0/8": 5000,
                "2001:db8:1::/48": None,
                "203.0.113.0/24": None,
            },
        )
        # removals, of present and of absent elements (one inside a banned network)
        await e.apply(
            [
                remove("192.0.2.7"),
                remove("2001:db8:1::/48"),
                remove("198.51.100.9"),
                remove("172.16.0.0/12"),
                remove("2001:db8:ffff::/48"),
                remove("10.1.0.0/16"),
            ],
            now,
        )
        assert close_to(
            await e.elements(), {"2001:db8::1": 60, "10.0.0.0/8": 5000, "203.0.113.0/24": None}
        )
        # the same target changed several times in one batch: the last change counts
        await e.apply(
            [add("172.16.0.0/12", now, 50), remove("172.16.0.0/12")] * 2
            + [add("172.16.0.0/12", now, 40)],
            now,
        )
        assert close_to(
            await e.elements(),
            {"2001:db8::1": 60, "10.0.0.0/8": 5000, "203.0.113.0/24": None, "172.16.0.0/12": 40},
        )

    asyncio.run(then_stop(e, scenario()))
    # removing 10.1.0.0/16 (absent, inside 10.0.0.0/8) made nft refuse the batch;
    # the retry found it absent, which is not an error
    assert e.counters["errors"] == 0, e.counters


def test_a_refused_change_does_not_block_the_others(ns):
    e = enforcer(ns)
    now = time.time()
    changes = [add(f"198.18.{i // 250}.{i % 250 + 1}", now, 600) for i in range(100)]
    changes[40:40] = [add("10.0.0.0/8", now, 600), add("10.1.0.0/16", now, 600)]  # overlap
    changes.append(add("2001:db8::/32", now))

    async def scenario() -> dict[str, float | None]:
        await e.start([], now)
        await e.apply(changes, now)
        return await e.elements()

    found = asyncio.run(then_stop(e, scenario()))
    assert "10.1.0.0/16" not in found  # nft refuses an interval overlapping another
    assert len(found) == 102 and found["10.0.0.0/8"] is not None and found["2001:db8::/32"] is None
    assert e.counters["errors"] == 1 and e.counters["elements-added"] == 102
    assert e.counters["batches-failed"] < 20  # split in halves, not one call per change


def test_start_reconciles_with_the_store(ns):
    e = enforcer(ns)
    now = time.time()
    store = [
        ban("192.0.2.1", now - 100, 600),  # 500 s left
        ban("192.0.2.2", now - 700, 600),  # over
        ban("10.0.0.0/8", now, None),
        ban("10.9.0.0/16", now, 60),  # inside 10.0.0.0/8: nft would refuse the overlap
        ban("2001:db8::5", now, 300),
        ban("2001:db8::5", now, 200),  # the longer one wins
    ]

    async def scenario() -> dict[str, float | None]:
        await e.start([], now)
        # stale kernel content: lifted while the daemon was down, or added by hand
        await e.apply([add("198.51.100.7", now, 900), add("172.16.0.0/12", now)], now)
        await e.apply([add("192.0.2.1", now, 9000)], now)
        await e.start(store, now)
        return await e.elements()

    found = asyncio.run(then_stop(e, scenario()))
    assert close_to(found, {"192.0.2.1": 500, "10.0.0.0/8": None, "2001:db8::5": 300}), found
    assert e.counters["elements-skipped"] == 1 and e.counters["errors"] == 0


def test_stop_keeps_the_bans_flush_removes_the_table(ns):
    e = enforcer(ns)
    now = time.time()

    async def scenario() -> None:
        await e.start([ban("192.0.2.1", now, None)], now)
        await e.stop()
        assert await e.elements() == {"192.0.2.1": None}
        await e.flush()
        assert await e.elements() == {} and await e.dropped() == 0
        await e.flush()  # no table: fine

    asyncio.run(then_stop(e, scenario()))
    gone = subprocess.run(
        ns.command("nft", "list", "table", "inet", TABLE), capture_output=True, timeout=10
    )
    assert gone.returncode != 0


def test_the_kernel_expires_bans(ns):
    e = enforcer(ns)
    now = time.time()

    async def scenario() -> float:
        await e.start([ban("192.0.2.1", now, None)], now)
        await e.apply([add("192.0.2.9", now, 2)], now)
        assert close_to(await e.elements(), {"192.0.2.1": None, "192.0.2.9": 2})
        for _ in range(60):
            if "192.0.2.9" not in await e.elements():
                return time.time() - now
            await asyncio.sleep(0.1)
        pytest.fail("a 2 s ban was still there after 60 polls")

    took = asyncio.run(then_stop(e, scenario()))
    assert 1.5 <= took < 4.5, took
    assert asyncio.run(e.elements()) == {"192.0.2.1": None}


def test_the_feed_sets_hold_exactly_what_was_loaded(ns):
    e = enforcer(ns)
    now = time.time()
    first = {
        "198.51.100.7": None,
        "203.0.113.0/24": now + 600,
        "2001:db8::/32": None,
        "192.0.2.200": now - 5,  # over: left out
    }
    # one kept, one gone, one new network holding the one gone (nft refuses
    # the overlap in one batch: the whole content is replaced instead)
    second = {"198.51.100.7": None, "203.0.0.0/16": now + 900, "2001:db8::/32": None}

    async def scenario():
        await e.start([ban("192.0.2.1", now, None)], now)
        await e.load_feeds(first, now)
        loaded = await e.feed_elements()
        await e.load_feeds(second, now)
        changed = await e.feed_elements()
        batches = e.counters["feed-batches"]
        await e.load_feeds(second, now + 1)  # nothing moved: no nft call
        unchanged = e.counters["feed-batches"] == batches
        await e.load_feeds({**second, "2001:db8:1::/48": None}, now)  # inside one held
        return loaded, changed, unchanged, await e.feed_elements(), await e.elements()

    loaded, changed, unchanged, after, bans = asyncio.run(then_stop(e, scenario()))
    assert close_to(loaded, {"198.51.100.7": None, "203.0.113.0/24": 600, "2001:db8::/32": None})
    assert close_to(changed, {"198.51.100.7": None, "203.0.0.0/16": 900, "2001:db8::/32": None})
    assert unchanged
    # the enforcer is handed disjoint targets (intel/kernel.py); one that is
    # not is refused alone, and the rest stays
    assert close_to(after, {"198.51.100.7": None, "203.0.0.0/16": 900, "2001:db8::/32": None})
    assert e.counters["feed-errors"] == 1, e.counters
    assert bans == {"192.0.2.1": None}  # the bans' sets are not the feeds'
    assert e.counters["feed-elements"] == 3


def test_many_deletions_load_the_feed_sets_whole(ns, monkeypatch):
    # nft deletes from an interval set in time proportional to its size, per
    # element: past the budget the whole content is loaded anew instead
    monkeypatch.setattr(nftables, "FEED_DELETE_BUDGET", 50)
    e = enforcer(ns)
    now = time.time()
    first = {f"198.51.100.{i}": now + 600 for i in range(20)}
    one_gone = {k: v for k, v in first.items() if k != "198.51.100.0"}  # 1 x 20: a difference
    five_gone = {
        k: v for k, v in one_gone.items() if k.rsplit(".", 1)[1] not in {"1", "2", "3", "4", "5"}
    }

    async def scenario():
        await e.start([], now)
        await e.load_feeds(first, now)
        await e.load_feeds(one_gone, now)
        after_one = await e.feed_elements(), e.counters["feed-replaced"]
        await e.load_feeds({**five_gone, "2001:db8::/48": None}, now)  # 5 x 19: whole
        return after_one, await e.feed_elements(), e.counters["feed-replaced"]

    (one, replaced_one), five, replaced_five = asyncio.run(then_stop(e, scenario()))
    assert close_to(one, {k: 600 for k in one_gone}) and replaced_one == 0
    assert close_to(five, {**{k: 600 for k in five_gone}, "2001:db8::/48": None})
    assert replaced_five == 1 and e.counters["feed-batches-failed"] == 0


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_a_listed_source_is_dropped_in_the_kernel_and_counted_apart(ns, family):
    inside, outside = addresses(ns, family)
    e = enforcer(ns, ports=[("udp", 5060)])
    now = time.time()
    sock = socket.socket(socket.AF_INET6 if family == "ipv6" else socket.AF_INET, socket.SOCK_DGRAM)

    async def scenario() -> tuple[int, int, dict[str, float | None]]:
        await e.start([], now)
        # the source's own network: the set is one of intervals
        listed = f"{outside.rsplit(':', 1)[0]}:/64" if family == "ipv6" else outside
        await e.load_feeds({listed: None}, now)
        for _ in range(5):
            sock.sendto(b"OPTIONS sip:x SIP/2.0\r\n\r\n", (inside, 5060))
        await asyncio.sleep(0.2)
        dropped = await e.feed_dropped(), await e.dropped()
        await e.start([], now)  # a restart empties the feed sets: the keeper loads them again
        return *dropped, await e.feed_elements()

    try:
        sock.bind((outside, 0))
        feed_dropped, ban_dropped, after_start = asyncio.run(then_stop(e, scenario()))
    finally:
        sock.close()
    assert (feed_dropped, ban_dropped) == (5, 0)
    assert after_start == {}


def test_nft_missing_is_a_clear_error():
    e = NftablesEnforcer(nft="/nonexistent/nft")
    with pytest.raises(EnforcerError, match=r'not found.*enforcer = "none"'):
        asyncio.run(e.start([], 0.0))
    asyncio.run(settled(e, [add("192.0.2.1", 0.0)], 0.0))  # no raise: logged and counted
    assert e.counters["errors"] == 1


def test_nft_not_permitted_is_a_clear_error(ns):
    need(shutil.which("setpriv") is not None, "setpriv is not installed (util-linux)")
    # root without CAP_NET_ADMIN: what nft says to an unprivileged user
    prefix = ns.command("setpriv", "--bounding-set=-net_admin")
    e = NftablesEnforcer(command_prefix=prefix)
    with pytest.raises(EnforcerError, match=r'not permitted.*CAP_NET_ADMIN.*or as root.*"none"'):
        asyncio.run(e.start([], 0.0))


# ------------------------------------------------------ the established flow

RECEIVER = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)  # answered: the flow is established in conntrack
    print(data.decode(), flush=True)
"""


class Lines:
    """A child's stdout, line by line, with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def read(self, wait: float) -> list[str]:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                break
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self.buffer += chunk
            if self.buffer.endswith(b"\n"):
                break
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line.decode() for line in lines]


def flows(ns: Namespace, family: str, source: str) -> str:
    return subprocess.run(
        ns.command("conntrack", "-L", "-f", family, "-s", source),
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


def exchange(sock: socket.socket, target: tuple[str, int], word: str, tries: int) -> bool:
    """Send ``word`` until it comes back (at most ``tries`` times, 0.2 s each)."""
    for _ in range(tries):
        sock.sendto(word.encode(), target)
        try:
            while sock.recv(2048) != word.encode():
                pass
            return True
        except TimeoutError:
            continue
    return False


def addresses(ns: Namespace, family: str) -> tuple[str, str]:
    """The namespace's address and ours on its link, in ``family``: the
    namespace's IPv4 ones, or a ULA /64 added to both ends of the link."""
    if family == "ipv4":
        return ns.inside, ns.outside
    prefix = f"fd00:5757:{os.getpid() % 65536:x}"
    inside, outside = f"{prefix}::2", f"{prefix}::1"
    peer = (
        subprocess.run(
            ["ip", "-n", ns.name, "-o", "link", "show", "type", "veth"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        .stdout.split(":")[1]
        .strip()
        .split("@")[0]
    )
    subprocess.run(
        ["ip", "addr", "add", f"{outside}/64", "dev", ns.link, "nodad"], check=True, timeout=10
    )
    subprocess.run(
        ["ip", "-n", ns.name, "addr", "add", f"{inside}/64", "dev", peer, "nodad"],
        check=True,
        timeout=10,
    )
    return inside, outside


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_an_established_udp_flow_is_cut(ns, family):
    need(
        shutil.which("conntrack") is not None,
        "conntrack is not installed (apt-get install conntrack)",
    )
    inside, outside = addresses(ns, family)
    # the namespace's own stateful firewall, as on most hosts: it turns conntrack on,
    # and accepts established flows before any later rule could drop them
    subprocess.run(
        ns.command("nft", "-f", "-"),
        input=b"add table inet host\n"
        b"add chain inet host input { type filter hook input priority 0; }\n"
        b"add rule inet host input ct state established,related accept\n",
        check=True,
        timeout=10,
    )
    e = enforcer(ns, ports=[("udp", 5060)])
    asyncio.run(e.start([], time.time()))
    receiver = subprocess.Popen(
        ns.command(sys.executable, "-c", RECEIVER, inside, "5060"), stdout=subprocess.PIPE
    )
    sock = socket.socket(socket.AF_INET6 if family == "ipv6" else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        lines = Lines(receiver)
        assert lines.read(5) == ["ready"]
        sock.bind((outside, 0))
        sock.settimeout(0.2)
        target = (inside, 5060)

        assert exchange(sock, target, "before", tries=25)
        assert "before" in lines.read(1)
        assert "dport=5060" in flows(ns, family, outside)  # the flow conntrack knows

        now = time.time()
        asyncio.run(settled(e, [add(outside, now, 600)], now))
        assert e.counters["conntrack-deleted"] >= 1 and e.counters["conntrack-failed"] == 0
        assert "dport=5060" not in flows(ns, family, outside)
        for i in range(5):
            sock.sendto(f"after{i}".encode(), target)
        with pytest.raises(TimeoutError):
            sock.recv(2048)
        assert lines.read(0.5) == []  # nothing reached the receiver
        assert asyncio.run(e.dropped()) >= 5
        assert "dport=5060" not in flows(ns, family, outside)  # dropped before conntrack

        asyncio.run(e.apply([remove(outside)], time.time()))
        assert exchange(sock, target, "again", tries=10)  # it was the ban
    finally:
        sock.close()
        receiver.kill()
        receiver.wait(5)
