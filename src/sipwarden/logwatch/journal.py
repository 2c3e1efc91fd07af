"""The systemd journal of one unit, followed through ``journalctl``.

Why journalctl and not the systemd-python binding: journalctl is on every
systemd machine already (the binding needs libsystemd's headers to build,
a compiler, and a package Debian ships only for its own Python), it reads
every journal format its systemd writes, and ``-o json`` is a stable,
documented interface. It runs as a child process that the mode reads line by
line; a child that dies is started again, after its cursor.

``JournalReader`` runs ``journalctl --output=json --follow -u UNIT`` (with
``--file`` for each of ``files``: a container's journal, or the test's),
starting after the remembered cursor, or at ``since`` (epoch seconds) the
first time. Each entry gives its MESSAGE (text, or the bytes a list stands
for), its time (``__REALTIME_TIMESTAMP``: exact, in UTC, so no timezone is
guessed) and its cursor (``position``). Bounds: a line of JSON is read up
to ``MAX_ENTRY`` bytes (longer ones are skipped and counted); the child's
stderr is kept to its last line for the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

log = logging.getLogger("sipwarden.logwatch")

MAX_ENTRY: Final = 1024 * 1024
RESTART_AFTER: Final = 2.0  # seconds before a dead journalctl is started again


class JournalReader:
    def __init__(
        self,
        unit: str,
        *,
        files: list[Path] | None = None,
        cursor: str | None = None,
        since: float | None = None,
        journalctl: str = "journalctl",
    ) -> None:
        self.unit, self.files = unit, list(files or ())
        self.cursor, self.since = cursor, since
        self.journalctl = journalctl
        self.events: Counter[str] = Counter()  # started, exited, too-long, bad-json
        self._proc: asyncio.subprocess.Process | None = None
        self.error = ""  # journalctl's last complaint

    def command(self) -> list[str]:
        args = [self.journalctl, "--output=json", "--follow", "--no-pager", "--all"]
        args += [f"--file={path}" for path in self.files]
        args += [f"--unit={self.unit}"]
        if self.cursor:
            args.append(f"--after-cursor={self.cursor}")
        elif self.since is not None:
            args.append(f"--since=@{int(self.since)}")
        else:
            args.append("--lines=all")
        return args

    async def entries(self) -> AsyncIterator[tuple[str, dt.datetime | None]]:
        """(message, its time) for every entry, forever; ``cursor`` is kept
        after each. A journalctl that exits is started again."""
        while True:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                limit=MAX_ENTRY,
            )
            self.events["started"] += 1
            errors = asyncio.create_task(self._stderr(self._proc))
            assert self._proc.stdout is not None
            try:
                while True:
                    try:
                        raw = await self._proc.stdout.readline()
                    except ValueError:  # longer than MAX_ENTRY: skip to the next newline
                        self.events["too-long"] += 1
                        continue
                    if not raw:
                        break
                    entry = self._entry(raw)
                    if entry is not None:
                        yield entry
            finally:
                await self.close()
                errors.cancel()
            self.events["exited"] += 1
            log.warning(
                "logwatch: journalctl for %s exited (%s); starting it again",
                self.unit,
                self.error or f"status {self._proc.returncode}",
            )
            await asyncio.sleep(RESTART_AFTER)

    def _entry(self, raw: bytes) -> tuple[str, dt.datetime | None] | None:
        try:
            data = json.loads(raw)
        except ValueError:
            self.events["bad-json"] += 1
            return None
        cursor = data.get("__CURSOR")
        if isinstance(cursor, str):
            self.cursor = cursor
        message = data.get("MESSAGE")
        if isinstance(message, list):  # not UTF-8: journalctl gives the bytes
            message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode(
                "utf-8", "replace"
            )
        if not isinstance(message, str):
            return None
        when = None
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            micros = int(data["__REALTIME_TIMESTAMP"])
            when = dt.datetime.fromtimestamp(micros / 1e6, dt.UTC)
        return message, when

    async def _stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self.error = line.decode("utf-8", "replace").strip()[:300]

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
