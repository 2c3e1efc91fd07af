"""`sipwarden service install [--dry-run] [--user NAME] [--config PATH]`:
the hardened systemd unit shipped with the package, written to
/etc/systemd/system with its user and a packaged config (``service``).
``--dry-run`` prints what it would do and the unit, and changes nothing.
Exits 1 with one line when it cannot (not root, a home-directory install)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import service as svc


@click.group("service")
def service() -> None:
    """Run sipwarden as a systemd service."""


@service.command("install")
@click.option(
    "--dry-run", is_flag=True, help="Print what would be done and the unit; change nothing."
)
@click.option(
    "--user",
    default=svc.DEFAULT_USER,
    show_default=True,
    help="The user the service runs as (created with useradd --system if missing).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=svc.DEFAULT_CONFIG,
    show_default=True,
    help="The config the service runs with (the packaged one is written there if absent).",
)
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=svc.UNIT_DIR,
    show_default=True,
    help="Where the unit is written.",
)
def install(dry_run: bool, user: str, config_path: Path, unit_dir: Path) -> None:
    """Write the systemd unit (its own user, only CAP_NET_ADMIN and
    CAP_NET_BIND_SERVICE, a read-only system, readiness when the ports are
    open), create its user and write a config if there is none."""
    try:
        plan = svc.plan(user=user, config_path=config_path, unit_dir=unit_dir)
        if not dry_run:
            svc.install(plan)
    except svc.ServiceError as exc:
        click.echo(f"sipwarden: {exc}", err=True)
        sys.exit(1)
    head = "would" if dry_run else "done:"
    for step in plan.steps:
        click.echo(f"# {head} {step}")
    if dry_run:
        click.echo(f"# {plan.unit_path}")
        click.echo(plan.unit, nl=False)
        return
    click.echo(
        "# next: edit the config (the PBX's address: [edge] backend), then\n"
        "#   systemctl daemon-reload && systemctl enable --now sipwarden\n"
        f"#   sipwarden status -c {plan.config_path}"
    )
