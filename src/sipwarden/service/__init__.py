"""The systemd service: the unit shipped with the package, and its install.

``sipwarden service install`` (``cli/service.py``) asks ``plan`` what it
would do and ``install`` to do it: the unit (``sipwarden.service`` here,
its ``@NAME@`` places filled: the command, the user, the config) written to
/etc/systemd/system; the service's own system user created with
``useradd --system`` if missing; the packaged config (``sipwarden.toml``
here: store, flow key and token under /var/lib/sipwarden, the control
socket under /run/sipwarden, as ``ProtectSystem=strict`` requires) written
to /etc/sipwarden/sipwarden.toml if there is none, readable by the
service's group only. An existing config is never touched.

Bounds: a few files and at most one ``useradd``; nothing is started or
enabled (the operator does that, told how).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

UNIT_NAME = "sipwarden.service"
DEFAULT_USER = "sipwarden"
DEFAULT_CONFIG = Path("/etc/sipwarden/sipwarden.toml")
UNIT_DIR = Path("/etc/systemd/system")
STATE_DIRECTORY = Path("/var/lib/sipwarden")  # the unit's StateDirectory=sipwarden
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")  # useradd's portable names
# hidden from the service by ProtectHome=yes
_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))


class ServiceError(Exception):
    """The service cannot be installed as asked; the text says why and what to do."""


@dataclass(frozen=True)
class Plan:
    """What ``install`` does: ``steps`` says it in words, in order."""

    unit_path: Path
    unit: str
    config_path: Path
    config: str | None  # None: the file exists and is kept
    user: str
    group: str
    create_user: bool
    steps: list[str] = field(default_factory=list)


def unit_template() -> str:
    """The unit as shipped, with its ``@EXEC_START@``, ``@USER@``,
    ``@GROUP@`` and ``@CONFIG@`` places."""
    return resources.files(__package__).joinpath(UNIT_NAME).read_text(encoding="utf-8")


def packaged_config() -> str:
    """The config the service starts with (absolute paths under the unit's
    state and runtime directories)."""
    return resources.files(__package__).joinpath("sipwarden.toml").read_text(encoding="utf-8")


def render_unit(exec_start: str, user: str, group: str, config: Path) -> str:
    """The unit with its places filled."""
    filled = {"@EXEC_START@": exec_start, "@USER@": user, "@GROUP@": group, "@CONFIG@": str(config)}
    text = unit_template()
    for place, value in filled.items():
        text = text.replace(place, value)
    return text


def sipwarden_command() -> str:
    """The absolute path of this installation's ``sipwarden`` command (the
    console script beside the interpreter, as pip and pipx place it), else
    the interpreter running the CLI module."""
    beside = Path(sys.executable).parent / "sipwarden"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("sipwarden")
    if found:
        return str(Path(found).absolute())
    return f"{sys.executable} -m sipwarden.cli"


def plan(
    *,
    user: str = DEFAULT_USER,
    config_path: Path = DEFAULT_CONFIG,
    unit_dir: Path = UNIT_DIR,
    exec_start: str | None = None,
) -> Plan:
    """What installing would do; raises ``ServiceError`` for a setting it cannot use."""
    if not _USER_NAME.match(user):
        raise ServiceError(
            f"--user {user!r}: not a system user name: use lower-case letters, digits,"
            " '_' and '-', starting with a letter or '_' (at most 32)"
        )
    if not config_path.is_absolute():
        raise ServiceError(
            f"--config {str(config_path)!r}: the unit needs an absolute path,"
            f" e.g. {str(DEFAULT_CONFIG)!r}"
        )
    command = exec_start or sipwarden_command()
    program = Path(command.split(" ", 1)[0])
    if any(program.is_relative_to(home) for home in _HOMES):
        raise ServiceError(
            f"sipwarden is installed at {str(program)!r}, inside a home directory the"
            " service cannot see (ProtectHome=yes): install it system-wide, e.g."
            " `PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install sipwarden`"
            " or `python3 -m venv /opt/sipwarden && /opt/sipwarden/bin/pip install sipwarden`"
        )
    try:
        group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        create_user = False
    except KeyError:
        group, create_user = user, True
    unit_path = unit_dir / UNIT_NAME
    config = None if config_path.exists() else packaged_config()
    steps = [
        f"create the system user {user!r} (useradd --system --user-group --no-create-home"
        f" --home-dir {STATE_DIRECTORY} --shell /usr/sbin/nologin {user})"
        if create_user
        else f"run as the existing user {user!r} (group {group!r})",
        f"write the config {str(config_path)!r} (mode 0640, group {group!r})"
        if config is not None
        else f"keep the config {str(config_path)!r} (it exists)",
        f"write the unit {str(unit_path)!r}",
    ]
    return Plan(
        unit_path=unit_path,
        unit=render_unit(command, user, group, config_path),
        config_path=config_path,
        config=config,
        user=user,
        group=group,
        create_user=create_user,
        steps=steps,
    )


def install(plan: Plan) -> None:
    """Do what ``plan`` says; raises ``ServiceError`` naming the step that failed."""
    if plan.create_user:
        argv = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            str(STATE_DIRECTORY),
            "--shell",
            "/usr/sbin/nologin",
            plan.user,
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"cannot create the user {plan.user!r}: {exc}") from exc
        if done.returncode != 0:
            raise ServiceError(
                f"cannot create the user {plan.user!r}: {done.stderr.strip()}"
                " (run as root, or create it and pass --user)"
            )
    try:
        if plan.config is not None:
            plan.config_path.parent.mkdir(parents=True, exist_ok=True)
            _write(plan.config_path, plan.config, 0o640)
            os.chown(plan.config_path, 0, grp.getgrnam(plan.group).gr_gid)
        plan.unit_path.parent.mkdir(parents=True, exist_ok=True)
        _write(plan.unit_path, plan.unit, 0o644)
    except (OSError, KeyError) as exc:
        raise ServiceError(f"cannot write the service's files: {exc}") from exc


def _write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` whole or not at all (a temporary file renamed)."""
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, mode)  # whatever the umask
    os.replace(tmp, path)
