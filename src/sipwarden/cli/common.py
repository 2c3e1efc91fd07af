"""What the `sipwarden` commands share: the ``-c`` option, the config and
the policy it names, asking the daemon when none may be running, and
writing a command's output to ``-o FILE`` or stdout.

A bad config or policy is one line on stderr and exit 2, never a
traceback; a daemon that does not answer is ``None``, for the commands
that then do the work themselves (the ``daemon.offline`` functions).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..config import Config, ConfigError, load_config
from ..daemon.control import ControlDenied, ControlError, ask
from ..fetch.dns import resolve
from ..policy import Policy, PolicyError, RuleError, rules_policy

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML config (default: embedded)",
)


def config_from(config_file: str | None) -> Config:
    try:
        return load_config(config_file)
    except ConfigError as exc:
        click.echo(f"sipwarden: bad configuration: {exc}", err=True)
        sys.exit(2)


def policy_from(config: Config) -> Policy:
    try:
        return rules_policy(config.policy, resolve=resolve)
    except (RuleError, PolicyError) as exc:
        click.echo(f"sipwarden: bad policy: {exc}", err=True)
        sys.exit(2)


def ask_daemon(
    config: Config, request: dict[str, Any], timeout: float = 10
) -> dict[str, Any] | None:
    """The daemon's answer, or None when no daemon is running. A daemon
    this user may not ask stops the command: doing the work without it
    would go behind its back (and into files that are not this user's)."""
    try:
        return ask(config.control.socket, request, timeout=timeout)
    except ControlDenied as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    except ControlError:
        return None


def write_out(text: str, output: Path | None, said: str) -> None:
    """``text`` to stdout, or to ``output`` with ``said`` on stderr once
    written; a file that cannot be written is one line and exit 1."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"sipwarden: cannot write {str(output)!r}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(said, err=True)
