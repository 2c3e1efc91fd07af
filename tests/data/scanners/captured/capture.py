#!/usr/bin/env python3
"""Loopback SIP listener that saves what scanners send, byte for byte.

Used to build the files in this directory (see README.md). It listens on
127.0.0.1 only, UDP and TCP on the same port, and writes

  * every UDP datagram, exactly as received (an empty datagram gives a
    0-byte file), and
  * every message framed out of a TCP stream (header block up to the blank
    line, then Content-Length bytes of body; leading CRLF keep-alives are
    kept with the message that follows; bytes left when the peer closes are
    saved as a partial message)

to ``<dir>/<prefix>_<NNNN>_<udp|tcp>.sip`` and appends one JSON line per
message to ``<dir>/<prefix>_index.jsonl`` (time, transport, peer, size,
first line, file, the status lines of the answers sent, if any), plus one
line per TCP connection opened or closed (no file).

Modes:

  silent  never answers (what a hidden edge does)
  answer  answers requests like a small PBX, so tools go past their first
          probe. Responses copy Via (all, in order), From, To (adding a
          tag), Call-ID and CSeq from the request (RFC 3261 8.2.6.2) and are
          sent back to the packet's source address (like rport) or on the
          same TCP connection:
            OPTIONS                     200 OK (Allow, Accept)
            REGISTER, known user        401 + WWW-Authenticate Digest; 200 OK
                                        once the digest for --password checks
            REGISTER, unknown user      404 Not Found (--register-unknown 401
                                        challenges every user instead)
            INVITE, known user          407 + Proxy-Authenticate; 486 Busy
                                        Here once the digest checks
            INVITE, unknown user        404 Not Found
            INVITE with --ring          100 Trying, 180 Ringing, 486 Busy Here
                                        (what nmap's sip-call-spoof waits for)
            ACK                         nothing
            BYE, CANCEL, other methods  200 OK
            responses, non-SIP, empty   nothing
          "Known" users are --users (default 100,101,1000); the user is the
          To URI's user for REGISTER and the Request-URI's (else the To
          URI's) for INVITE. A digest checks if it is right for --password,
          with or without qop; SIPVicious's qop=auth without cnonce (hashed
          as if there were no qop) is accepted too, like a lenient PBX.

Stdlib only. Example:

  python3 capture.py --port 15060 --mode answer --prefix svwar --dir /tmp/cap

Stop it with Ctrl-C / SIGTERM, or --duration SECONDS.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"


# ---------------------------------------------------------------- parsing


@dataclass
class Request:
    method: str
    uri: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all(self, *names: str) -> list[str]:
        want = {n.lower() for n in names}
        return [v for k, v in self.headers if k.lower() in want]

    def first(self, *names: str) -> str | None:
        got = self.all(*names)
        return got[0] if got else None


COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "l": "Content-Length",
    "m": "Contact",
}


def parse_request(data: bytes) -> Request | None:
    """Start line and headers of a SIP request; None for responses/garbage."""
    head = data.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    text = head.decode("utf-8", "replace").lstrip("\r\n")
    lines = re.split(r"\r?\n", text)
    if not lines or not lines[0]:
        return None
    parts = lines[0].split(" ")
    if len(parts) < 3 or not parts[-1].startswith("SIP/2.0") or lines[0].startswith("SIP/"):
        return None
    req = Request(parts[0], parts[1])
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and req.headers:  # folded line
            k, v = req.headers[-1]
            req.headers[-1] = (k, v + " " + line.strip())
            continue
        if ":" not in line:
            continue
        k, v = line.split(":", 1)
        k = k.strip()
        k = COMPACT.get(k.lower(), k)
        req.headers.append((k, v.strip()))
    return req


def uri_user(value: str | None) -> str:
    if not value:
        return ""
    m = re.search(r"sips?:([^@;>\s]+)@", value)
    return m.group(1) if m else ""


def digest_params(value: str) -> dict[str, str]:
    value = re.sub(r"^\s*Digest\s+", "", value, flags=re.I)
    out = {}
    for k, v in re.findall(r'([\w-]+)\s*=\s*("[^"]*"|[^,\s]*)', value):
        out[k.lower()] = v[1:-1] if v.startswith('"') else v
    return out


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def digest_ok(req: Request, header: str, password: str) -> bool:
    value = req.first(header)
    if not value:
        return False
    p = digest_params(value)
    try:
        ha1 = md5(f"{p['username']}:{p['realm']}:{password}")
        ha2 = md5(f"{req.method}:{p['uri']}")
        wants = [md5(f"{ha1}:{p['nonce']}:{ha2}")]  # RFC 2069, no qop
        if p.get("qop") and p.get("cnonce"):
            wants = [md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")]
        # SIPVicious sends qop=auth without cnonce/nc (and hashes without qop)
        # when the challenge offered no qop: accept that, like a lenient PBX.
    except KeyError:
        return False
    return p.get("response", "").lower() in wants


# ---------------------------------------------------------------- answering


@dataclass
class Answerer:
    users: set[str]
    password: str
    realm: str
    register_unknown: int
    qop: bool
    server: str | None
    ring: bool = False

    def answer(self, req: Request) -> list[tuple[str, bytes]]:
        """The responses to send, in order (none for ACK)."""
        m = req.method.upper()
        extra: list[str] = []
        if m == "ACK":
            return []
        if m == "OPTIONS":
            code, reason = 200, "OK"
            extra = [
                "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REGISTER, NOTIFY, INFO, REFER, SUBSCRIBE",
                "Accept: application/sdp",
            ]
        elif m == "REGISTER":
            user = uri_user(req.first("To"))
            known = user in self.users
            if digest_ok(req, "Authorization", self.password) and known:
                code, reason = 200, "OK"
                contact = req.first("Contact")
                if contact and contact != "*":
                    extra = [f"Contact: {contact};expires=60"]
            elif known or self.register_unknown == 401:
                code, reason = 401, "Unauthorized"
                extra = [f"WWW-Authenticate: {self.challenge()}"]
            else:
                code, reason = 404, "Not Found"
        elif m == "INVITE":
            user = uri_user(req.uri) or uri_user(req.first("To"))
            if self.ring:
                code, reason = 486, "Busy Here"
            elif user not in self.users:
                code, reason = 404, "Not Found"
            elif digest_ok(req, "Proxy-Authorization", self.password) or digest_ok(
                req, "Authorization", self.password
            ):
                code, reason = 486, "Busy Here"
            else:
                code, reason = 407, "Proxy Authentication Required"
                extra = [f"Proxy-Authenticate: {self.challenge()}"]
        else:
            code, reason = 200, "OK"
        out = []
        if self.ring and m == "INVITE":
            totag = secrets.token_hex(4)
            out.append(("100 Trying", self.build(req, 100, "Trying", [])))
            out.append(("180 Ringing", self.build(req, 180, "Ringing", [], totag)))
            out.append((f"{code} {reason}", self.build(req, code, reason, extra, totag)))
            return out
        out.append((f"{code} {reason}", self.build(req, code, reason, extra)))
        return out

    def challenge(self) -> str:
        qop = ', qop="auth"' if self.qop else ""
        return f'Digest algorithm=MD5, realm="{self.realm}", nonce="{secrets.token_hex(8)}"{qop}'

    def build(
        self, req: Request, code: int, reason: str, extra: list[str], totag: str | None = None
    ) -> bytes:
        lines = [f"SIP/2.0 {code} {reason}"]
        lines.extend(f"Via: {via}" for via in req.all("Via"))
        for name in ("From",):
            v = req.first(name)
            if v is not None:
                lines.append(f"{name}: {v}")
        to = req.first("To")
        if to is not None:
            if code != 100 and not re.search(r";\s*tag=", to):
                to = f"{to};tag={totag or secrets.token_hex(4)}"
            lines.append(f"To: {to}")
        for name in ("Call-ID", "CSeq"):
            v = req.first(name)
            if v is not None:
                lines.append(f"{name}: {v}")
        if self.server:
            lines.append(f"Server: {self.server}")
        lines.extend(extra)
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------- TCP framing


def frame(buf: bytes) -> tuple[bytes | None, bytes]:
    """One message off the front of a TCP buffer, or (None, buf) if incomplete.

    Leading CRLFs (keep-alives) stay attached to the message that follows so
    the saved bytes are exactly what was on the wire.
    """
    i = 0
    while buf[i : i + 2] == b"\r\n":
        i += 2
    end = buf.find(b"\r\n\r\n", i)
    if end < 0:
        return None, buf
    head_end = end + 4
    m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", buf[i:end])
    length = int(m.group(1)) if m else 0
    if len(buf) < head_end + length:
        return None, buf
    return buf[: head_end + length], buf[head_end + length :]


# ---------------------------------------------------------------- listener


class Capture:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.count = 0
        self.saved = 0
        os.makedirs(args.dir, exist_ok=True)
        self.index = open(  # noqa: SIM115 - open for the listener's lifetime
            os.path.join(args.dir, f"{args.prefix}_index.jsonl"), "a", buffering=1
        )
        self.answerer = (
            Answerer(
                users=set(u for u in args.users.split(",") if u),
                password=args.password,
                realm=args.realm,
                register_unknown=args.register_unknown,
                qop=args.qop,
                server=args.server,
                ring=args.ring,
            )
            if args.mode == "answer"
            else None
        )

    def record(
        self, transport: str, peer: tuple, data: bytes, partial: bool = False
    ) -> list[bytes]:
        self.count += 1
        name = None
        if self.args.max_files is None or self.saved < self.args.max_files:
            self.saved += 1
            suffix = "_partial" if partial else ""
            name = f"{self.args.prefix}_{self.count:04d}_{transport}{suffix}.sip"
            with open(os.path.join(self.args.dir, name), "wb") as f:
                f.write(data)
        replies: list[bytes] = []
        status = None
        if self.answerer and not partial:
            req = parse_request(data)
            if req is not None:
                got = self.answerer.answer(req)
                if got:
                    status = ", ".join(st for st, _ in got)
                    replies = [b for _, b in got]
        first = data.lstrip(b"\r\n").split(b"\r\n", 1)[0][:200].decode("latin-1")
        entry = {
            "t": round(time.time(), 6),
            "n": self.count,
            "transport": transport,
            "peer": f"{peer[0]}:{peer[1]}",
            "size": len(data),
            "first_line": first,
            "file": name,
            "answer": status,
        }
        self.index.write(json.dumps(entry) + "\n")
        if not self.args.quiet:
            print(
                f"{self.count:4d} {transport} {entry['peer']:<21} {len(data):5d}B {first!r} -> {status}",
                flush=True,
            )
        return replies

    def event(self, what: str, peer: tuple) -> None:
        """A TCP connection opened or closed (no file; index and log only)."""
        entry = {"t": round(time.time(), 6), "event": what, "peer": f"{peer[0]}:{peer[1]}"}
        self.index.write(json.dumps(entry) + "\n")
        if not self.args.quiet:
            print(f"     {what} {entry['peer']}", flush=True)

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((HOST, self.args.port))
        sel.register(udp, selectors.EVENT_READ, ("udp", None))
        tcp = None
        if not self.args.udp_only:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((HOST, self.args.port))
            tcp.listen(64)
            sel.register(tcp, selectors.EVENT_READ, ("listen", None))
        bufs: dict[socket.socket, bytearray] = {}
        peers: dict[socket.socket, tuple] = {}
        deadline = time.monotonic() + self.args.duration if self.args.duration else None
        print(
            f"listening on {HOST}:{self.args.port} udp{'' if self.args.udp_only else '+tcp'} mode={self.args.mode}",
            flush=True,
        )
        stop = False

        def on_signal(*_):
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop:
            timeout = 0.5
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                timeout = min(timeout, left)
            for key, _ in sel.select(timeout):
                kind = key.data[0]
                sock = key.fileobj
                if kind == "udp":
                    data, peer = sock.recvfrom(65535)
                    for reply in self.record("udp", peer, data):
                        sock.sendto(reply, peer)
                elif kind == "listen":
                    conn, peer = sock.accept()
                    conn.setblocking(False)
                    bufs[conn] = bytearray()
                    peers[conn] = peer
                    sel.register(conn, selectors.EVENT_READ, ("conn", None))
                    self.event("tcp-open", peer)
                else:
                    try:
                        chunk = sock.recv(65535)
                    except (ConnectionResetError, BlockingIOError):
                        chunk = b""
                    if chunk:
                        bufs[sock] += chunk
                        while True:
                            msg, rest = frame(bytes(bufs[sock]))
                            if msg is None:
                                break
                            bufs[sock] = bytearray(rest)
                            for reply in self.record("tcp", peers[sock], msg):
                                with contextlib.suppress(OSError):
                                    sock.sendall(reply)
                    else:
                        if bufs[sock]:
                            self.record("tcp", peers[sock], bytes(bufs[sock]), partial=True)
                        self.event("tcp-close", peers[sock])
                        sel.unregister(sock)
                        sock.close()
                        del bufs[sock], peers[sock]
        for conn, buf in list(bufs.items()):
            if buf:
                self.record("tcp", peers[conn], bytes(buf), partial=True)
            conn.close()
        udp.close()
        if tcp:
            tcp.close()
        print(f"done: {self.count} messages, {self.saved} saved", flush=True)
        self.index.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (UDP and TCP)")
    p.add_argument("--mode", choices=("silent", "answer"), default="silent")
    p.add_argument("--prefix", default="msg", help="file name prefix")
    p.add_argument("--dir", default=".", help="output directory")
    p.add_argument("--users", default="100,101,1000", help="known users (answer mode)")
    p.add_argument("--password", default="secret", help="password that makes digest auth succeed")
    p.add_argument("--realm", default="asterisk")
    p.add_argument("--register-unknown", type=int, choices=(401, 404), default=404)
    p.add_argument("--qop", action="store_true", help='add qop="auth" to challenges')
    p.add_argument("--server", default=None, help="Server header in answers (default none)")
    p.add_argument(
        "--ring", action="store_true", help="answer every INVITE 100, 180, then 486 Busy Here"
    )
    p.add_argument("--udp-only", action="store_true")
    p.add_argument(
        "--max-files", type=int, default=None, help="stop saving (not answering) after N"
    )
    p.add_argument("--duration", type=float, default=None, help="exit after SECONDS")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    Capture(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
