"""Who may see and act through the dashboard (issue 19, item 1), against the
real daemon on loopback: with the operator's token configured (reads closed,
as off loopback) every page, file and API call is refused without the
token or the login session; the login form sets an HttpOnly, SameSite=Strict
cookie (Secure when the browser came over TLS) and renders no secret; with
reads open on loopback the pages are free but a ban still needs the token
or the session. On loopback and off: a cross-site form post, a foreign
Origin or Host cannot ban or unban, session or not. And, in-process, the
guard's session rules off loopback over plain values."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from sipwarden.api import ApiToken, Guard
from sipwarden.api.session import COOKIE, LIFETIME, MAX_SESSIONS, Sessions, session_of
from sipwarden.config import ApiConfig

from .conftest import free_udp_port, start_edge_process
from .test_bans_daemon import api_url

TOKEN = "dashboard-test-token-0123456789abcdef"
CLOSED = f'[api]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\nhosts = ["sipwarden.test"]\n'
VICTIM = "203.0.113.40"


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=15)
    assert proc.returncode == 0


def login(api: str, origin: str | None = None) -> httpx.Response:
    headers = {"Origin": origin or api}
    return httpx.post(f"{api}/login", data={"token": TOKEN}, headers=headers)


def session_cookie(answer: httpx.Response) -> tuple[str, str]:
    """The session's value and the Set-Cookie line that set it."""
    line = answer.headers["Set-Cookie"]
    assert line.startswith(f"{COOKIE}="), line
    return line.split(";")[0].split("=", 1)[1], line


def bans(api: str) -> list[str]:
    listed = httpx.get(f"{api}/api/v1/bans", headers={"Authorization": f"Bearer {TOKEN}"})
    assert listed.status_code == 200, listed.text
    return [b["ip"] for b in listed.json()]


def cross_site_attempts(api: str, cookies: dict[str, str]) -> None:
    """Every way another page could try to ban or unban through the browser:
    all refused, and nothing changed."""
    port = urlsplit(api).port
    before = bans(api)
    attempts = [
        # a cross-site form post (the browser would send the cookie were it not Strict)
        ("POST", "/api/v1/bans", {"Origin": "http://evil.example"}, b"ip=" + VICTIM.encode()),
        ("POST", "/api/v1/bans", {"Origin": "null"}, b'{"ip": "203.0.113.40"}'),
        ("DELETE", f"/api/v1/bans/{VICTIM}", {"Origin": "http://evil.example"}, None),
        ("DELETE", f"/api/v1/bans/{VICTIM}", {"Origin": f"http://localhost:{port + 1}"}, None),
        # DNS rebinding: the attacker's name pointed at 127.0.0.1, its page's own origin
        (
            "POST",
            "/api/v1/bans",
            {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},
            b'{"ip": "203.0.113.40"}',
        ),
        ("DELETE", f"/api/v1/bans/{VICTIM}", {"Host": f"evil.example:{port}"}, None),
        # the login form itself, posted from elsewhere (login CSRF)
        ("POST", "/login", {"Origin": "http://evil.example"}, f"token={TOKEN}".encode()),
    ]
    for method, path, headers, body in attempts:
        kind = (
            "application/x-www-form-urlencoded" if body and body[:1] != b"{" else "application/json"
        )
        answer = httpx.request(
            method,
            api + path,
            content=body,
            headers={"Content-Type": kind, **headers},
            cookies=cookies,
        )
        assert answer.status_code == 403, (method, path, headers, answer.text)
        assert "Set-Cookie" not in answer.headers
    assert bans(api) == before


def test_reads_closed_every_page_and_call_needs_the_token_or_the_session(tmp_path: Path):
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port(), extra=CLOSED)
    try:
        api = api_url(line)
        for path in ("/", f"/source/{VICTIM}", "/static/app.js", "/static/common.js", "/nothing"):
            refused = httpx.get(api + path)
            assert refused.status_code == 303 and refused.headers["Location"] == "/login", path
        for path in ("/api/v1/bans", "/api/v1/status", "/api/v1/events/stream", "/metrics"):
            refused = httpx.get(api + path)
            assert refused.status_code == 401, (path, refused.text)
        form = httpx.get(f"{api}/login")  # the form and its stylesheet are how one logs in
        assert form.status_code == 200 and 'type="password"' in form.text
        assert httpx.get(f"{api}/static/style.css").status_code == 200
        assert "frame-ancestors 'none'" in form.headers["Content-Security-Policy"]

        wrong = httpx.post(f"{api}/login", data={"token": "guess"}, headers={"Origin": api})
        assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
        assert "not the token" in wrong.text and "guess" not in wrong.text
        forged = {COOKIE: "made-up"}
        assert httpx.get(f"{api}/api/v1/bans", cookies=forged).status_code == 401

        answer = login(api)
        assert answer.status_code == 303 and answer.headers["Location"] == "/"
        session, set_cookie = session_cookie(answer)
        attributes = {a.strip().lower() for a in set_cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back
        assert TOKEN not in set_cookie and session != TOKEN
        cookies = {COOKIE: session}
        for path in ("/", f"/source/{VICTIM}", "/static/app.js", "/api/v1/bans", "/metrics"):
            seen = httpx.get(api + path, cookies=cookies)
            assert seen.status_code == 200, (path, seen.text)
            assert TOKEN not in seen.text  # no secret rendered
        assert httpx.get(f"{api}/api/v1/session", cookies=cookies).json()["acts"] is True

        # the dashboard's ban and unban: the session and our own Origin
        own = {"Origin": api}
        made = httpx.post(f"{api}/api/v1/bans", json={"ip": VICTIM}, headers=own, cookies=cookies)
        assert made.status_code == 201, made.text
        cross_site_attempts(api, cookies)
        # a session without any Origin is not the dashboard's page: refused
        bare = httpx.delete(f"{api}/api/v1/bans/{VICTIM}", cookies=cookies)
        assert bare.status_code == 403 and "Origin" in bare.json()["error"]
        lifted = httpx.delete(f"{api}/api/v1/bans/{VICTIM}", headers=own, cookies=cookies)
        assert lifted.status_code == 200, lifted.text
        assert bans(api) == []

        # through a reverse proxy with TLS (its name in [api] hosts): a Secure cookie
        proxied = login(api, origin="https://sipwarden.test")
        assert proxied.status_code == 303
        assert "secure" in {a.strip().lower() for a in session_cookie(proxied)[1].split(";")}

        out = httpx.post(f"{api}/logout", headers=own, cookies=cookies)
        assert out.status_code == 303
        assert httpx.get(f"{api}/api/v1/bans", cookies=cookies).status_code == 401
        assert httpx.get(f"{api}/", cookies=cookies).status_code == 303
    finally:
        stop(proc)


def test_reads_open_on_loopback_but_a_ban_needs_the_token_or_the_session(tmp_path: Path):
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port())
    token = None
    try:
        api = api_url(line)
        page = httpx.get(f"{api}/")
        assert page.status_code == 200 and "<h2" in page.text
        assert httpx.get(f"{api}/api/v1/session").json() == {"acts": False, "reads_open": True}
        assert httpx.get(f"{api}/api/v1/sources?since=1h").json() == []  # no traffic yet
        bad = httpx.get(f"{api}/api/v1/sources?limit=0")
        assert bad.status_code == 400 and "limit" in bad.json()["error"]
        token = (tmp_path / "sipwarden.token").read_text().strip()
        for path in ("/", "/static/app.js", "/static/common.js", "/login"):
            assert token not in httpx.get(api + path).text
        # a page is refused under another Host too (DNS rebinding reads nothing)
        port = urlsplit(api).port
        assert httpx.get(f"{api}/", headers={"Host": f"evil.example:{port}"}).status_code == 403
        # no token, no session: no ban, even from our own origin
        refused = httpx.post(f"{api}/api/v1/bans", json={"ip": VICTIM}, headers={"Origin": api})
        assert refused.status_code == 401
        answer = httpx.post(f"{api}/login", data={"token": token}, headers={"Origin": api})
        session, _ = session_cookie(answer)
        cookies = {COOKIE: session}
        made = httpx.post(
            f"{api}/api/v1/bans", json={"ip": VICTIM}, headers={"Origin": api}, cookies=cookies
        )
        assert made.status_code == 201, made.text
        cross_site_attempts(api, cookies)
        cross_site_attempts(api, {})
        assert httpx.get(f"{api}/api/v1/bans").json()[0]["ip"] == VICTIM
    finally:
        stop(proc)


def test_the_session_off_loopback():
    """The guard over plain values, listening on a public address."""
    guard = Guard.for_api(
        ApiConfig(listen="192.0.2.5:8080", token="t" * 32), ApiToken("t" * 32, None)
    )
    local = ("192.0.2.5", 8080)
    host = {"Host": "192.0.2.5:8080"}
    ours = {**host, "Origin": "http://192.0.2.5:8080"}
    for path in ("/", "/static/app.js", "/api/v1/bans", "/api/v1/events/stream"):
        refused = guard.refusal("GET", host, local, path)
        assert refused is not None and refused.status == 401, path
    assert guard.refusal("GET", host, local, "/login") is None
    assert guard.refusal("POST", ours, local, "/login") is None  # the form checks the token
    refused = guard.refusal("POST", {**host, "Origin": "http://evil.example"}, local, "/login")
    assert refused is not None and refused.status == 403
    session = guard.sessions.start()
    cookie = {"Cookie": f"theme=dark; {COOKIE}={session}"}
    assert guard.refusal("GET", {**host, **cookie}, local, "/") is None
    assert guard.refusal("DELETE", {**ours, **cookie}, local, "/api/v1/bans/x") is None
    for headers in (
        {**host, **cookie},  # no Origin: not the dashboard's page
        {**host, **cookie, "Origin": "http://evil.example"},
        {**cookie, "Host": "evil.example:8080", "Origin": "http://evil.example:8080"},
    ):
        refused = guard.refusal("DELETE", headers, local, "/api/v1/bans/x")
        assert refused is not None and refused.status in (401, 403), headers
    guard.sessions.end(session)
    refused = guard.refusal("GET", {**host, **cookie}, local, "/")
    assert refused is not None and refused.status == 401


def test_sessions_end_and_are_bounded():
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    first = sessions.start()
    assert sessions.live(first) and not sessions.live("x" * 43) and not sessions.live(None)
    now[0] += LIFETIME
    assert not sessions.live(first)  # ended with its lifetime
    made = [sessions.start() for _ in range(MAX_SESSIONS + 5)]
    assert len(sessions.expiry) == MAX_SESSIONS
    assert not sessions.live(made[0]) and sessions.live(made[-1])  # the oldest made room
    assert session_of({"Cookie": f'a=1; {COOKIE}="{made[-1]}"'}) == made[-1]
    assert session_of({"Cookie": "bad cookie ;;; ="}) is None
