"""Who may act through the REST API (issue 14, item 7), against the real
daemon on loopback: a state-changing request needs the token even there
(the token is made at first start, kept 0600 and across restarts); the
Host header must name the API (DNS rebinding) and a foreign Origin may
change nothing (a cross-site form post); a local user reads neither the
token nor the control socket, and the CLI tells it so. And, in-process, the
Host rule and what needs the token over plain values, and the token file's
checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sipwarden.api import ApiToken, Guard, TokenError, api_token, token_file
from sipwarden.config import ApiConfig, ConfigError, config_from_dict, load_config

from .conftest import free_udp_port, need, start_edge_process
from .test_bans_daemon import api_url


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM, a clean exit, and what it wrote to stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return err.decode()


def bans(api: str) -> list[str]:
    listed = httpx.get(f"{api}/api/v1/bans")
    assert listed.status_code == 200, listed.text
    return [b["ip"] for b in listed.json()]


def test_a_state_change_needs_the_token_even_on_loopback(tmp_path: Path):
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port())
    try:
        api = api_url(line)
        assert bans(api) == []  # reads on loopback stay open
        refused = httpx.post(f"{api}/api/v1/bans", json={"ip": "192.0.2.1"})
        assert refused.status_code == 401, refused.text
        assert "needs the API token" in refused.json()["error"]
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert bans(api) == []  # nothing changed

        token_file = tmp_path / "sipwarden.token"  # beside the store, sipwarden.db
        assert f"(token in {token_file})".encode() in line
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        good = {"Authorization": f"Bearer {token}"}
        for wrong in ("Bearer wrong", token, f"Bearer {token[:-1]}", f"Basic {token}"):
            refused = httpx.post(
                f"{api}/api/v1/bans", json={"ip": "192.0.2.1"}, headers={"Authorization": wrong}
            )
            assert refused.status_code == 401, (wrong, refused.text)
        assert bans(api) == []
        made = httpx.post(f"{api}/api/v1/bans", json={"ip": "192.0.2.1"}, headers=good)
        assert made.status_code == 201, made.text
        assert httpx.delete(f"{api}/api/v1/bans/192.0.2.1").status_code == 401
        assert bans(api) == ["192.0.2.1"]
        # other methods and unknown paths need it too (nothing is found without it)
        assert httpx.put(f"{api}/api/v1/bans/192.0.2.1").status_code == 401
        assert httpx.post(f"{api}/api/v1/nothing").status_code == 401
        lowercase = {"Authorization": f"bearer {token}"}  # the scheme is case-insensitive
        assert httpx.delete(f"{api}/api/v1/bans/192.0.2.1", headers=lowercase).status_code == 200
        assert bans(api) == []
    finally:
        stop(proc)

    # restarted: the same token, still working
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port())
    try:
        assert token_file.read_text().strip() == token
        made = httpx.post(f"{api_url(line)}/api/v1/bans", json={"ip": "192.0.2.12"}, headers=good)
        assert made.status_code == 201, made.text
    finally:
        stop(proc)


def test_the_host_and_the_origin_are_checked(tmp_path: Path):
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port())
    try:
        api = api_url(line)
        port = urlsplit(api).port
        assert port is not None

        # DNS rebinding: evil.example now resolves to 127.0.0.1, and the
        # browser sends its own name: refused, even a read
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "[::1]"):
            refused = httpx.get(f"{api}/api/v1/bans", headers={"Host": host})
            assert refused.status_code == 403, (host, refused.text)
            assert f"Host {host!r} is not this API" in refused.json()["error"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert httpx.get(f"{api}/api/v1/bans", headers={"Host": host}).status_code == 200

        # a page of another site posts a form (a cookie would not help it)
        form = httpx.post(
            f"{api}/api/v1/bans",
            content=b"ip=192.0.2.1",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "http://evil.example",
                "Cookie": "session=taken",
            },
        )
        assert form.status_code == 403, form.text
        assert "may not change anything" in form.json()["error"]
        # a browser would not send the token cross-site; were it there, the
        # Origin still refuses it (another local web app's port too)
        good = {"Authorization": f"Bearer {(tmp_path / 'sipwarden.token').read_text().strip()}"}
        for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}"):
            refused = httpx.post(
                f"{api}/api/v1/bans", json={"ip": "192.0.2.1"}, headers={**good, "Origin": origin}
            )
            assert refused.status_code == 403, (origin, refused.text)
        assert bans(api) == []
        # a page of the API's own origin (the dashboard, later) with the token
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            made = httpx.post(
                f"{api}/api/v1/bans", json={"ip": "192.0.2.1"}, headers={**good, "Origin": origin}
            )
            assert made.status_code == 201, (origin, made.text)
        assert bans(api) == ["192.0.2.1"]
    finally:
        stop(proc)


def test_the_token_file_and_the_hosts_keys(tmp_path: Path):
    """``[api] token_file`` (relative to the config) and ``hosts``; a token
    file others may read, or one without a token, keeps the API down (the
    edge runs)."""
    (tmp_path / "secret").mkdir()
    extra = (
        '[api]\nlisten = "127.0.0.1:0"\ntoken_file = "secret/api.token"\n'
        'hosts = ["sipwarden.test"]\n'
    )
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port(), extra=extra)
    try:
        api = api_url(line)
        for host in ("sipwarden.test", "SIPWARDEN.test:443"):  # a reverse proxy's name
            assert httpx.get(f"{api}/api/v1/bans", headers={"Host": host}).status_code == 200
        refused = httpx.get(f"{api}/api/v1/bans", headers={"Host": "evil.example"})
        assert "use 127.0.0.1:" in refused.json()["error"] and "sipwarden.test" in refused.text
        made = tmp_path / "secret" / "api.token"
        good = {
            "Authorization": f"Bearer {made.read_text().strip()}",
            "Origin": "https://sipwarden.test",
        }
        posted = httpx.post(f"{api}/api/v1/bans", json={"ip": "192.0.2.1"}, headers=good)
        assert posted.status_code == 201, posted.text
    finally:
        stop(proc)
    assert f"(token in {made})".encode() in line
    assert [p.name for p in made.parent.iterdir()] == ["api.token"]  # no temporary file left

    made.chmod(0o644)
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port(), extra=extra)
    err = stop(proc)
    assert b"listening on" in line and b"API" not in line  # the edge runs; the API does not
    assert (
        f"the API is not running: api.token_file = '{made}': other users may read or write it"
        " (mode 0644): run chmod 600 on it, or delete it to make a new one"
    ) in err
    assert "Traceback" not in err

    made.write_text("\n")
    made.chmod(0o600)
    proc, line = start_edge_process(tmp_path, free_udp_port(), free_udp_port(), extra=extra)
    err = stop(proc)
    assert b"API" not in line and "it holds no token" in err


def test_a_local_user_can_ban_nothing_nor_read_the_token_or_the_control_socket():
    """As ``nobody`` (the issue's reproduction): its POST to the API is
    refused, and the token file and the control socket are closed to it;
    a file of the same directory open to all (the config) shows that the
    directory lets it in."""
    need(os.geteuid() == 0, "acting as another user needs root")
    need(shutil.which("runuser") is not None, "runuser is not installed (util-linux)")
    need(shutil.which("curl") is not None, "curl is not installed")
    # not under pytest's tmp_path: its directories are closed to other users
    where = Path(tempfile.mkdtemp(prefix="sipwarden-auth-"))
    try:
        where.chmod(0o755)
        proc, line = start_edge_process(where, free_udp_port(), free_udp_port())
        try:
            api = api_url(line)
            curl = ["curl", "-sS", "--max-time", "5"]

            def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    ["runuser", "-u", "nobody", "--", *command],
                    capture_output=True,
                    text=True,
                    timeout=15,
                )

            as_json = ["-H", "Content-Type: application/json"]
            ban = ["--data", json.dumps({"ip": "192.0.2.1"}), f"{api}/api/v1/bans"]
            posted = as_nobody(*curl, "-o", "/dev/null", "-w", "%{http_code}", *as_json, *ban)
            assert posted.stdout == "401", posted
            assert bans(api) == []

            token, config = where / "sipwarden.token", where / "edge.toml"
            socket = where / "sipwarden.sock"
            config.chmod(0o644)
            assert as_nobody("cat", str(config)).returncode == 0  # the directory lets it in
            read = as_nobody("cat", str(token))
            assert read.returncode != 0 and "Permission denied" in read.stderr

            assert stat.S_IMODE(socket.lstat().st_mode) == 0o600
            through_socket = as_nobody(*curl, "-v", "--unix-socket", str(socket), "http://x/")
            assert through_socket.returncode == 7, through_socket  # could not connect
            assert "Permission denied" in through_socket.stderr
            by_root = subprocess.run(
                [*curl, "--unix-socket", str(socket), "http://x/"], capture_output=True, timeout=15
            )
            assert by_root.returncode != 7  # connected (and got no HTTP back)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(where)


LOCAL = ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    ("host", "local", "ours"),
    [
        ("127.0.0.1:8080", LOCAL, True),
        ("localhost:8080", LOCAL, True),
        ("LocalHost.:8080", LOCAL, True),
        ("api.example.net", LOCAL, True),  # in hosts: any port
        ("api.example.net:8443", LOCAL, True),
        ("127.0.0.1", LOCAL, False),  # port 80
        ("127.0.0.1:8081", LOCAL, False),
        ("127.0.0.2:8080", LOCAL, False),
        ("localhost.evil.example:8080", LOCAL, False),
        ("evil.example:8080", LOCAL, False),
        ("evil@127.0.0.1:8080", LOCAL, False),
        ("127.0.0.1:8080@evil", LOCAL, False),
        ("127.0.0.1:8080/x", LOCAL, False),
        ("[::1]:8080", ("::1", 8080), True),
        ("[0:0::1]:8080", ("::1", 8080), True),
        ("::1:8080", ("::1", 8080), False),
        ("127.0.0.1:8080", ("::ffff:127.0.0.1", 8080), True),  # a dual-stack listener
        ("[::1]:8080", LOCAL, False),
        ("localhost:8080", None, False),  # the connection's address is unknown
        ("api.example.net", None, True),
    ],
)
def test_the_host_names_the_api(host: str, local: tuple[str, int] | None, ours: bool):
    config = ApiConfig(listen="127.0.0.1:8080", hosts=["API.example.net."])
    guard = Guard.for_api(config, ApiToken("t" * 32, Path("x.token")))
    assert guard.ours(host, 80, local) is ours
    refused = guard.refusal("GET", {"Host": host}, local)
    assert (refused is None) is ours
    if refused is not None:
        assert refused.status == 403 and "[api] hosts" in refused.reason


def test_what_needs_the_token():
    made = ApiToken("t" * 32, Path("x.token"))
    host = {"Host": "127.0.0.1:8080"}
    with_token = {**host, "Authorization": f"Bearer {'t' * 32}"}
    on_loopback = Guard.for_api(ApiConfig(listen="127.0.0.1:8080"), made)
    assert on_loopback.refusal("GET", host, LOCAL) is None
    assert on_loopback.refusal("HEAD", host, LOCAL) is None
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "post"):
        refused = on_loopback.refusal(method, host, LOCAL)
        assert refused is not None and refused.status == 401
        assert on_loopback.refusal(method, with_token, LOCAL) is None
    # the operator's own token guarded reads before there was a made one: still does
    configured = Guard.for_api(ApiConfig(listen="127.0.0.1:8080"), ApiToken("t" * 32, None))
    assert configured.refusal("GET", host, LOCAL) is not None
    assert configured.refusal("GET", with_token, LOCAL) is None
    # off loopback, every request
    everywhere = Guard.for_api(ApiConfig(listen="0.0.0.0:8080", token="t" * 32), made)
    refused = everywhere.refusal("GET", {"Host": "192.0.2.5:8080"}, ("192.0.2.5", 8080))
    assert refused is not None and refused.status == 401
    # HTTP/1.0 may leave the Host out (aiohttp refuses that in HTTP/1.1 itself)
    for headers in ({}, {"Host": ""}):
        refused = on_loopback.refusal("GET", headers, LOCAL)
        assert refused is not None and refused.status == 400


def test_the_keys_of_the_token_and_the_hosts(tmp_path: Path):
    config = tmp_path / "edge.toml"
    config.write_text('[storage]\npath = "state/bans.db"\n[api]\ntoken_file = ""\n')
    assert token_file(load_config(config)) == tmp_path / "state" / "bans.token"
    config.write_text('[api]\ntoken_file = "api.token"\n')
    assert token_file(load_config(config)) == tmp_path / "api.token"
    for bad in ("http://sipwarden.test", "sipwarden.test:8080", "[::1]", "a b"):
        with pytest.raises(ConfigError) as refused:
            config_from_dict({"api": {"hosts": ["localhost", bad]}})
        assert str(refused.value) == (
            f"api.hosts: entry [1], {bad!r}, is not a host name or an IP address"
            f" (no port, scheme or path: e.g. sipwarden.example.com) (got ['localhost', {bad!r}])"
        )


def test_the_token_is_made_once_and_a_bad_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("SIPWARDEN_API_TOKEN", raising=False)
    path = tmp_path / "api.token"
    config = config_from_dict({"api": {"token_file": str(path)}})
    made = api_token(config)
    assert made.file == path and api_token(config) == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["api.token"]
    monkeypatch.setenv("SIPWARDEN_API_TOKEN", "from-the-environment")
    assert api_token(config) == ApiToken("from-the-environment", None)
    set_here = config_from_dict({"api": {"token": "from-the-config-file", "token_file": str(path)}})
    assert api_token(set_here) == ApiToken("from-the-config-file", None)
    monkeypatch.delenv("SIPWARDEN_API_TOKEN")

    def refused(where: Path) -> str:
        with pytest.raises(TokenError) as error:
            api_token(config_from_dict({"api": {"token_file": str(where)}}))
        assert str(error.value).startswith(f"api.token_file = '{where}': ")
        return str(error.value)

    assert "not a regular file" in refused(tmp_path)
    assert "cannot create it: No such file or directory" in refused(tmp_path / "no" / "t")
    link = tmp_path / "link.token"
    link.symlink_to(path)
    assert "cannot read it" in refused(link)
    os.mkfifo(tmp_path / "fifo.token", 0o600)
    assert "not a regular file" in refused(tmp_path / "fifo.token")
    path.chmod(0o640)
    assert "(mode 0640): run chmod 600 on it" in refused(path)
    for content in ("short\n", "x" * 20 + " y" * 10, "é" * 20):
        path.write_text(content)
        path.chmod(0o600)
        assert "it holds no token" in refused(path)


def test_a_token_file_of_another_user_is_refused(tmp_path: Path):
    need(os.geteuid() == 0, "giving a file to another user needs root")
    import pwd

    path = tmp_path / "api.token"
    path.write_text("x" * 43 + "\n")
    path.chmod(0o600)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(path, nobody, -1)
    with pytest.raises(TokenError) as refused:
        api_token(config_from_dict({"api": {"token_file": str(path)}}))
    assert f"it belongs to uid {nobody}, not to the daemon's user or root" in str(refused.value)


def test_a_user_the_control_socket_refuses_is_told_so_and_nothing_is_done_behind_it():
    """As ``nobody``, `bans add` with the daemon running: the control
    socket refuses it, and the CLI says so (it used to take the refusal for
    "no daemon", write the store itself and fail with a traceback)."""
    need(os.geteuid() == 0, "acting as another user needs root")
    import pwd

    from click.testing import CliRunner

    from sipwarden.cli import main

    where = Path(tempfile.mkdtemp(prefix="sipwarden-auth-"))
    try:
        where.chmod(0o755)
        proc, line = start_edge_process(where, free_udp_port(), free_udp_port())
        try:
            config = where / "edge.toml"
            config.chmod(0o644)
            nobody = pwd.getpwnam("nobody")
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: nobody, running the CLI in this interpreter
                code = 99
                try:
                    os.setgroups([])
                    os.setgid(nobody.pw_gid)
                    os.setuid(nobody.pw_uid)
                    done = CliRunner().invoke(main, ["bans", "add", "192.0.2.9", "-c", str(config)])
                    os.write(write, json.dumps([done.exit_code, done.output]).encode())
                    code = 0
                finally:
                    os._exit(code)
            os.close(write)
            with os.fdopen(read) as answer:
                exit_code, output = json.loads(answer.read() or "[null, null]")
            assert os.waitpid(pid, 0)[1] == 0
            assert exit_code == 1, output
            assert output.strip() == (
                f"sipwarden: {where / 'sipwarden.sock'}: permission denied: the daemon's"
                " control socket is for its own user (run this as that user, or as root)"
            )
            assert bans(api_url(line)) == []
        finally:
            stop(proc)
    finally:
        shutil.rmtree(where)
