"""Nothing a peer sends can make the proxy raise, or send anywhere it should not.

Both paths (general and splice) and both directions get arbitrary bytes and
mutations of real messages, including ones carrying our own tokens and seals.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipwarden.proxy import Drop, FlowTokens, Local, ProxySettings, Send, StatelessProxy
from sipwarden.sip import SipError, make_response, parse, peek
from sipwarden.values import Peer

from ..conftest import SCANNERS, TORTURE

BACKEND = Peer("udp", "127.0.0.1", 5080)
PUBLIC = Local("udp", "198.51.100.1", 5060)
PHONE = Peer("udp", "203.0.113.9", 40000)
PROXY = StatelessProxy(
    ProxySettings(
        backend=BACKEND,
        internal={"udp": Local("udp", "127.0.0.1", 5062)},
        public={("udp", False): PUBLIC},
        domains=frozenset({"pbx.example.com", "127.0.0.1"}),
    ),
    FlowTokens(b"f" * 32),
)

CORPUS = [p.read_bytes() for p in sorted(SCANNERS.glob("*.sip")) + sorted(TORTURE.glob("*.dat"))]


def _ours() -> list[bytes]:
    """Messages that carry our Via, tokens and seals, as the PBX and phones see them."""
    invite = next(d for d in CORPUS if d.startswith(b"INVITE sip:") and b"wsinv" not in d)
    out = []
    for action in PROXY.from_client(invite, PHONE, PUBLIC):
        if isinstance(action, Send):
            fwd = parse(action.data)
            answer = make_response(
                fwd,
                200,
                to_tag="t",
                headers=[
                    ("Record-Route", "<sip:127.0.0.1:5080;lr>"),
                    ("Contact", "<sip:pbx@127.0.0.1:5080>"),
                ],
            )
            out += [action.data, answer.to_bytes()]
            out += [
                a.data
                for a in PROXY.from_backend(answer.to_bytes(), BACKEND)
                if isinstance(a, Send)
            ]
    return out


SEEDS = CORPUS + _ours()


def run_both_ways(data: bytes) -> None:
    for fn in (
        lambda v: PROXY.from_client(data, PHONE, PUBLIC, v),
        lambda v: PROXY.from_backend(data, BACKEND, v),
    ):
        try:
            view = peek(data)
        except SipError:
            view = None
        for v in (view, None):
            actions = fn(v)
            assert actions and all(isinstance(a, Send | Drop) for a in actions)
            for a in actions:
                if isinstance(a, Send):
                    assert (
                        a.flow in (BACKEND, PHONE)
                        or a.flow.host == "203.0.113.9"
                        or a.flow.host == "192.168.1.20"
                    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data):
    run_both_ways(data)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i : i + draw(st.integers(1, 40))]
        elif kind == "dup":
            data[i:i] = data[i : i + draw(st.integers(1, 80))]
        else:
            data[i:i] = draw(
                st.sampled_from(
                    [
                        b",",
                        b";swr=AAAA",
                        b";swf=sw",
                        b"\r\nRoute: <sip:x;lr>",
                        b"\r\n ",
                        b'"',
                        b"<",
                        b">",
                    ]
                )
            )
    return bytes(data)


@pytest.mark.fuzz
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages(data):
    run_both_ways(data)
