"""The demo's cast and timings: who plays from which loopback address, the
PBX's accounts, the scanner probes it replays, and how long each one waits.

Plain values, shared by the scenario, its rendering and the run; the probes
are data files in ``probes/`` (byte-exact captures), read as package data.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

REALM = "demo.sipwarden"
USERS = {"100": "1qaz2wsx", "200": "zaq1xsw2"}
PHONE_USER = "100"
PHONE = "127.0.0.1"
ENUMERATOR = "127.0.0.31"
GUESSER = "127.0.0.32"
ENUMERATED = tuple(str(n) for n in range(1000, 1016))  # svwar -e1000-1015
# a short wordlist with user 100's real password 7th: it must never get there
GUESSES = ("100", "1234", "100100", "password", "admin", "12345678", "1qaz2wsx", "qwerty")
PHONE_UA = "Yealink SIP-T46S 66.86.0.15"
DISGUISE_UA = "Grandstream GXP2170 1.0.11.3"  # what the attackers claim to be
SILENCE = 0.3  # seconds an attacker or scanner waits for an answer
PHONE_WAIT = 2.0  # seconds the phone waits for each answer (it always gets one)
PHONE_EVERY = 1.0  # seconds between the phone's registrations
SETTLE = 3.0  # seconds for a ban to reach the store


@dataclass(frozen=True)
class Probe:
    file: str  # in probes/
    tool: str
    what: str
    transport: Literal["udp", "tcp"]
    source: str


PROBES = (
    Probe("nmap_7.93_sU_portscan_empty_udp.sip", "nmap -sU", "port scan, an empty datagram", "udp", "127.0.0.21"),
    Probe("nmap_7.93_sV_SIPOptions_OPTIONS_udp.sip", "nmap -sV", "SIPOptions service probe", "udp", "127.0.0.22"),
    Probe("nmap_7.93_sV_SIPOptions_OPTIONS_tcp.sip", "nmap -sV", "SIPOptions service probe", "tcp", "127.0.0.23"),
    Probe("nmap_7.93_nse_sip-methods_OPTIONS_udp.sip", "nmap sip-methods", "OPTIONS", "udp", "127.0.0.24"),
    Probe("svmap_0.3.8_OPTIONS_udp.sip", "svmap", "OPTIONS", "udp", "127.0.0.25"),
    Probe("svmap_0.3.8_compact_REGISTER_udp.sip", "svmap -c -m REGISTER", "REGISTER, no User-Agent", "udp", "127.0.0.26"),
    Probe("svmap_0.3.8_INVITE_udp.sip", "svmap -m INVITE", "INVITE: would ring a phone", "udp", "127.0.0.27"),
    Probe("sipsak_0.9.8.1_OPTIONS_udp.sip", "sipsak", "OPTIONS", "udp", "127.0.0.28"),
)  # fmt: skip


def probe_bytes(probe: Probe) -> bytes:
    return files("sipwarden.demo.probes").joinpath(probe.file).read_bytes()
