"""``sipwarden demo``: the edge at work, on loopback only, in a few seconds.

It starts the built-in registrar as a leaky PBX (404 for users it does not
know) and one edge worker in front of it, with its store, control socket and
flow key in a temporary directory (nothing is left behind; no firewall is
touched). Then, each from its own loopback address (127.0.0.0/8): real
scanner probes captured from nmap, SIPVicious and sipsak (``probes/``),
an enumeration run and a password-guessing run with the scanners'
fingerprints removed (only their behaviour gives them away), while a phone on
127.0.0.1 keeps registering with the account under attack. It prints what
the edge did. Every figure comes from the running edge, its verdict counters,
its ban book and store, and its REST API; nothing is assumed.

The package, by job:

- ``cast``: who plays from which address, the accounts, the probes, timings;
- ``actors``: the sending side (the phone's SIP, UDP actors, a TCP probe);
- ``scenario``: what is played against the edge, and its records;
- ``summary``: the JSON summary and its ``problems``;
- ``render``: printing it all with rich;
- ``run``: the registrar, the edge, the scenario; ``run_demo``, the door;
- ``registrar/`` (the built-in PBX, also used by the tests and the bench)
  and ``probes/`` (the captured scanner probes, package data).
"""

from .run import run_demo

__all__ = ["run_demo"]
