"""A real ``redis-server`` for the fleet's tests: on a free port of the
address asked for (loopback by default), no persistence, an ACL user with a
password (the default user off), or TLS with a certificate made for it.

``redis_server(tmp_path)`` is a context manager giving a ``Redis`` with its
URL, user and password, and ``stop()``/``start()`` to take it away and bring
it back on the same port (what a node sees when Redis restarts).

``tls=True``: Redis listens with TLS only (``rediss://``), its certificate
signed by a test CA made here with ``openssl`` (``Certificates``: the CA,
another CA that did not sign it, and a client certificate the CA signed);
``client_certs=True`` makes Redis ask every client for one
(``tls-auth-clients yes``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..conftest import need

USER = "sipwarden"
PASSWORD = "fleet-test-password-0123456789"


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@dataclass(frozen=True)
class Certificates:
    """A test CA, the server's certificate for ``host``, a client's, and a CA
    that signed neither (what a node with the wrong ``tls_ca_file`` holds)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    @classmethod
    def make(cls, folder: Path, host: str) -> Certificates:
        need(shutil.which("openssl") is not None, "openssl is not installed")
        folder.mkdir(parents=True, exist_ok=True)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

        for ca in ("ca", "other-ca"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", f"/CN=sipwarden test {ca}",
                    "-keyout", str(folder / f"{ca}.key"), "-out", str(folder / f"{ca}.pem"))  # fmt: skip
        for name, subject, ext in (
            ("server", f"/CN={host}", f"subjectAltName=IP:{host}"),
            ("client", "/CN=sipwarden-node", "extendedKeyUsage=clientAuth"),
        ):
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", subject, "-keyout", str(folder / f"{name}.key"),
                    "-out", str(folder / f"{name}.csr"))  # fmt: skip
            (folder / f"{name}.ext").write_text(ext + "\n")
            openssl("x509", "-req", "-in", str(folder / f"{name}.csr"), "-days", "2",
                    "-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca.key"),
                    "-CAcreateserial", "-extfile", str(folder / f"{name}.ext"),
                    "-out", str(folder / f"{name}.pem"))  # fmt: skip
        return cls(
            folder / "ca.pem",
            folder / "server.pem",
            folder / "server.key",
            folder / "client.pem",
            folder / "client.key",
            folder / "other-ca.pem",
        )


@dataclass
class Redis:
    workdir: Path
    host: str
    port: int
    prefix: list[str] = field(
        default_factory=list
    )  # run it inside a namespace: ["ip", "netns", ...]
    proc: subprocess.Popen[bytes] | None = None
    certs: Certificates | None = None  # TLS only (rediss://) when set
    client_certs: bool = False  # Redis asks each client for a certificate

    @property
    def url(self) -> str:
        return f"{'rediss' if self.certs else 'redis'}://{self.host}:{self.port}/0"

    def tls_toml(self) -> dict[str, object]:
        """The ``[fleet]`` TLS keys a node of this Redis needs (none without TLS)."""
        if self.certs is None:
            return {}
        files: dict[str, object] = {"tls_ca_file": str(self.certs.ca)}
        if self.client_certs:
            files["tls_cert_file"] = str(self.certs.client_cert)
            files["tls_key_file"] = str(self.certs.client_key)
        return files

    def _cli_tls(self) -> list[str]:
        if self.certs is None:
            return []
        return ["--tls", "--cacert", str(self.certs.ca), "--cert", str(self.certs.client_cert),
                "--key", str(self.certs.client_key)]  # fmt: skip

    def fleet_toml(self, node: str, **extra: object) -> str:
        """The ``[fleet]`` section a node of this Redis needs."""
        lines = [
            "[fleet]",
            f'redis = "{self.url}"',
            f'node = "{node}"',
            f'username = "{USER}"',
            f'password = "{PASSWORD}"',
        ]
        keys = {**self.tls_toml(), **extra}
        lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.workdir / "redis.conf"
        listen = f"port {self.port}\n"
        if self.certs is not None:  # TLS only: the plain port closed
            listen = (
                f"port 0\ntls-port {self.port}\ntls-cert-file {self.certs.server_cert}\n"
                f"tls-key-file {self.certs.server_key}\ntls-ca-cert-file {self.certs.ca}\n"
                f"tls-auth-clients {'yes' if self.client_certs else 'no'}\n"
            )
        conf.write_text(
            f'bind {self.host}\n{listen}save ""\nappendonly no\n'
            f"dir {self.workdir}\nprotected-mode no\n"
            "user default off\n"
            f"user {USER} on >{PASSWORD} ~* &* +@all\n"
        )
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [*self.prefix, "redis-server", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.workdir / 'redis.log').read_text()}"
                )
            answer = subprocess.run(
                [*self.prefix, "redis-cli", "-h", self.host, "-p", str(self.port), *self._cli_tls(),
                 "--user", USER, "--pass", PASSWORD, "--no-auth-warning", "ping"],
                capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            if answer.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer in 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def cli(self, *args: str) -> str:
        """``redis-cli`` as the fleet's user: its output."""
        return subprocess.run(
            [*self.prefix, "redis-cli", "-h", self.host, "-p", str(self.port), *self._cli_tls(),
             "--user", USER, "--pass", PASSWORD, "--no-auth-warning", *args],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip


@contextmanager
def redis_server(
    workdir: Path,
    host: str = "127.0.0.1",
    prefix: list[str] | None = None,
    port: int = 0,
    *,
    tls: bool = False,
    client_certs: bool = False,
) -> Iterator[Redis]:
    need(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    workdir.mkdir(parents=True, exist_ok=True)
    certs = Certificates.make(workdir / "tls", host) if tls else None
    server = Redis(
        workdir, host, port or free_tcp_port(host), prefix or [], None, certs, client_certs
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
