"""The ``sipwarden`` command: one module per noun, the output apart.

Each module holds one noun's commands (``run``: run, reload, status;
``demo``; ``rules``: rules list, explain; ``replay``; ``parse``; ``bans``;
``intel``; ``firewall``; ``observe``: events, flows; ``analysis``;
``honeypot``: calls, export; ``logwatch``: test, status; ``service``: install;
``init``: a config for this machine's PBX; ``doctor``; ``report``; ``top``: the live
terminal view; ``fleet``: status), which read their options, call the library or
the daemon (``common.ask_daemon``; with no daemon, ``daemon.offline`` and
``daemon.intel_commands``) and hand the result to ``render``. ``main`` is
the console script (``sipwarden.cli:main``); ``python -m sipwarden.cli``
runs it too. The daemon's wiring (``app``), the demo and the replay are
imported by the commands that run them, not by ``--help``.
"""

from __future__ import annotations

import click

from .. import __version__
from . import (
    analysis,
    bans,
    demo,
    doctor,
    firewall,
    fleet,
    honeypot,
    init,
    intel,
    logwatch,
    observe,
    parse,
    replay,
    report,
    rules,
    run,
    service,
    top,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sipwarden")
def main() -> None:
    """sipwarden: a SIP security edge in front of your PBX."""


for command in (
    run.run,
    run.reload,
    run.status,
    demo.demo,
    rules.rules,
    rules.explain,
    replay.replay,
    parse.parse_cmd,
    bans.bans,
    intel.intel,
    firewall.firewall,
    observe.events,
    observe.flows,
    analysis.analysis,
    honeypot.honeypot,
    logwatch.logwatch,
    service.service,
    init.init,
    doctor.doctor,
    report.report,
    top.top,
    fleet.fleet,
):
    main.add_command(command)

__all__ = ["main"]
