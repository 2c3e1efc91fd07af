"""Any JSON through REST or the control socket gives a clear refusal (4xx,
``ok: false`` with an error) or a valid ban, never a 500, a dropped
connection or a traceback in the daemon's log (hypothesis, against a real
`sipwarden run` on loopback)."""

from __future__ import annotations

import json
import math
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipwarden.values import MAX_DURATION, canonical

from ..conftest import free_udp_port, start_edge_process

TOKEN = "fuzz-token-0123456789abcdef"
EXAMPLES = 150  # per test: bounded, a few seconds each
# one daemon for the module: the fixture is shared on purpose, and a real
# daemon answers in milliseconds, not microseconds
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
address = st.ip_addresses().map(str)
network = st.builds(lambda ip, length: f"{ip}/{length}", st.ip_addresses(), st.integers(0, 130))
target = st.one_of(
    address,
    network,
    st.sampled_from(["0.0.0.0/0", "::/0", "fe80::1%eth0", "127.0.0.1", "::ffff:10.0.0.1", ""]),
    st.text(max_size=30),
    json_value,
)
duration = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["10m", "1h", "99999999999w", "permanent", "1e308", "-5s", "0"]),
    json_value,
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """(API base URL, control socket, log file) of a daemon on loopback."""
    tmp = tmp_path_factory.mktemp("fuzz")
    proc, line = start_edge_process(
        tmp,
        free_udp_port(),
        free_udp_port(),
        extra=f'[api]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n',
    )
    found = line.decode().split("API ", 1)[1].split("/api/v1", 1)[0]
    try:
        yield found, tmp / "sipwarden.sock", tmp
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        (tmp / "stderr.log").write_bytes(err)
        assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]


def valid_ban(ban: dict[str, Any]) -> None:
    assert ban["ip"] == canonical(ban["ip"])
    expires = ban["expires_at"]
    assert expires is None or (
        math.isfinite(expires) and 0 < expires - ban["created_at"] <= MAX_DURATION
    )


def post(api: str, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return httpx.post(f"{api}/api/v1/bans", content=body, headers=headers, timeout=10)


@FUZZ
@given(
    body=st.one_of(
        st.fixed_dictionaries(
            {},
            optional={"ip": target, "for": duration, "permanent": json_value, "reason": json_value},
        ),
        json_value,
    )
)
def test_any_json_posted_as_a_ban_is_refused_clearly_or_a_valid_ban(
    daemon: tuple[str, Path, Path], body: Any
) -> None:
    api, _, _ = daemon
    answer = post(api, json.dumps(body, allow_nan=True).encode())  # NaN, Infinity: as sent
    assert answer.status_code in (201, 400, 409), (body, answer.status_code, answer.text)
    shown = answer.json()
    if answer.status_code == 201:
        valid_ban(shown)
        removed = httpx.delete(
            f"{api}/api/v1/bans/{shown['ip']}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert removed.status_code == 200, removed.text
    else:
        assert isinstance(shown["error"], str) and shown["error"]


@FUZZ
@given(path=st.text(min_size=1, max_size=40).filter(lambda t: "/" not in t and t not in ".."))
def test_any_target_in_a_path_is_refused_clearly(daemon: tuple[str, Path, Path], path: str) -> None:
    api, _, _ = daemon
    for method in ("GET", "DELETE"):
        answer = httpx.request(
            method,
            f"{api}/api/v1/bans/{quote(path, safe='')}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert answer.status_code in (200, 400, 404), (path, method, answer.status_code)


def ask_raw(sock_path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(sock_path))
        sock.sendall(data)
        received = b""
        while not received.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, f"the daemon closed without an answer to {data[:200]!r}"
            received += chunk
    answer = json.loads(received)
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
    return answer


COMMANDS = ["bans-add", "bans-remove", "bans-show", "bans-list", "intel-lookup", "stats"]


@FUZZ
@given(
    request=st.one_of(
        st.fixed_dictionaries(
            {"cmd": st.sampled_from(COMMANDS)},
            optional={
                "target": target,
                "duration": duration,
                "reason": json_value,
                "local": json_value,
            },
        ),
        json_value,
    )
)
# found by this test: a ban shorter than the clock can tell (issue 21's run)
@example(request={"cmd": "bans-add", "target": "203.0.113.5", "duration": 8e-91})
def test_any_json_through_the_control_socket_is_answered(
    daemon: tuple[str, Path, Path], request: Any
) -> None:
    _, sock_path, _ = daemon
    answer = ask_raw(sock_path, json.dumps(request, allow_nan=True).encode() + b"\n")
    if answer["ok"] and isinstance(request, dict) and request.get("cmd") == "bans-add":
        valid_ban(answer["ban"])
        removed = ask_raw(
            sock_path,
            json.dumps({"cmd": "bans-remove", "target": answer["ban"]["ip"]}).encode() + b"\n",
        )
        assert removed["ok"], removed
    elif not answer["ok"]:
        assert isinstance(answer["error"], str) and answer["error"]


@pytest.mark.parametrize(
    "data",
    [b"\n", b"not json\n", b"[1, 2]\n", b"\xff\xfe\n", b"{" * 70_000 + b"\n", b'{"cmd": 7}\n'],
    ids=["empty", "text", "array", "bytes", "too-long", "cmd-not-a-name"],
)
def test_what_is_not_a_request_is_answered_as_such(
    daemon: tuple[str, Path, Path], data: bytes
) -> None:
    _, sock_path, _ = daemon
    answer = ask_raw(sock_path, data)
    assert answer["ok"] is False and answer["error"]
