"""Asterisk's configuration files as the survey needs them: sections with
their options and the line each sits on, templates, ``#include``; and edits
that keep every other line as it was, so a diff shows only the change.

Asterisk's syntax is not Python's configparser's: a key may repeat
(``local_net``), ``=>`` equals ``=``, ``;`` starts a comment (``\\;`` does
not), a section may be a template (``[name](!)``) or inherit some
(``[name](tpl1,tpl2)``), and ``#include``/``#tryinclude`` pull in other files
(FreePBX's ``pjsip.transports.conf``). Bounded: at most 32 files, each read
once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*(?:\(([^)]*)\))?")
_OPTION = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=>?\s*(.*?)\s*$")
_INCLUDE = re.compile(r"^\s*#(?:try)?include\s+\"?([^\"\s]+)\"?")
MAX_FILES = 32


def strip_comment(line: str) -> str:
    """The line without its ``;`` comment (an escaped ``\\;`` stays)."""
    out = re.split(r"(?<!\\);", line, maxsplit=1)[0]
    return out.replace("\\;", ";").rstrip()


@dataclass
class Option:
    key: str
    value: str
    line: int  # index into the file's lines
    section: Section


@dataclass
class Section:
    name: str
    file: IniFile
    line: int  # the header's line
    end: int  # one past the section's last line
    template: bool = False
    inherits: tuple[str, ...] = ()
    options: list[Option] = field(default_factory=list)

    def get(self, key: str) -> Option | None:
        """The last value of ``key`` set in this section itself."""
        found = [o for o in self.options if o.key.lower() == key]
        return found[-1] if found else None

    def all(self, key: str) -> list[Option]:
        return [o for o in self.options if o.key.lower() == key]


@dataclass
class IniFile:
    path: str  # the machine's path
    lines: list[str]
    sections: list[Section] = field(default_factory=list)


def parse(path: str, text: str, within: str | None = None) -> IniFile:
    """``within``: the section an ``#include`` of this file sat in (FreePBX
    includes files of bare options into ``[general]``)."""
    ini = IniFile(path, text.splitlines())
    current: Section | None = None
    for i, raw in enumerate(ini.lines):
        line = strip_comment(raw)
        if not line.strip():
            continue
        if m := _SECTION.match(line):
            if current is not None:
                current.end = _last_content(ini.lines, current.line, i)
            extra = [t.strip() for t in (m[2] or "").split(",") if t.strip()]
            current = Section(
                m[1].strip(),
                ini,
                i,
                i + 1,
                template="!" in extra,
                inherits=tuple(t for t in extra if t != "!"),
            )
            ini.sections.append(current)
        elif m := _OPTION.match(line):
            if current is None:
                if within is None:
                    continue
                current = Section(within, ini, i - 1, i)
                ini.sections.append(current)
            current.options.append(Option(m[1], m[2], i, current))
    if current is not None:
        current.end = _last_content(ini.lines, current.line, len(ini.lines))
    return ini


def _last_content(lines: list[str], start: int, stop: int) -> int:
    """One past the last non-blank, non-comment line of a section, so that
    a line added to it goes after its options, not after the blank lines
    and comments that open the next section."""
    end = start + 1
    for i in range(start + 1, stop):
        if strip_comment(lines[i]).strip():
            end = i + 1
    return end


def read_tree(root: Path, first: str) -> list[IniFile]:
    """``first`` (a machine path such as ``/etc/asterisk/pjsip.conf``) and
    the files it includes, in order, read under ``root``; missing ones are
    skipped (``#tryinclude``, or FreePBX's not yet generated files)."""
    base = Path(first).parent
    seen: set[str] = set()
    out: list[IniFile] = []
    todo: list[tuple[str, str | None]] = [(first, None)]
    while todo and len(seen) < MAX_FILES:
        path, within = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            text = (root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        ini = parse(path, text, within)
        out.append(ini)
        current: str | None = within
        for raw in ini.lines:
            if m := _SECTION.match(strip_comment(raw)):
                current = m[1].strip()
            elif m := _INCLUDE.match(raw):
                name = m[1]
                todo.append((name if name.startswith("/") else str(base / name), current))
    return out


class Tree:
    """Sections across a file and its includes, with inheritance resolved."""

    def __init__(self, files: list[IniFile]) -> None:
        self.files = files
        self.sections = [s for f in files for s in f.sections]
        self._by_name: dict[str, Section] = {}
        for s in self.sections:
            self._by_name.setdefault(s.name, s)

    def lookup(self, section: Section, key: str, depth: int = 0) -> Option | None:
        """``key`` in ``section`` or, failing that, the templates it inherits."""
        own = section.get(key)
        if own is not None or depth > 8:
            return own
        for name in reversed(section.inherits):
            parent = self._by_name.get(name)
            if parent is not None and (found := self.lookup(parent, key, depth + 1)):
                return found
        return None

    def typed(self, kind: str) -> list[Section]:
        """The concrete sections whose ``type`` (own or inherited) is ``kind``."""
        return [
            s
            for s in self.sections
            if not s.template
            and (t := self.lookup(s, "type")) is not None
            and t.value.lower() == kind
        ]

    def templates_of(self, sections: list[Section]) -> list[Section]:
        """The templates those sections inherit, each once (an option set
        in a template is edited there)."""
        out: list[Section] = []
        for s in sections:
            for name in s.inherits:
                parent = self._by_name.get(name)
                if parent is not None and parent not in out:
                    out.append(parent)
        return out


class Edits:
    """Line edits to files, applied at the end so indexes stay valid:
    replace a line, drop one, or add lines after one."""

    def __init__(self) -> None:
        self._replace: dict[tuple[str, int], str] = {}
        self._drop: set[tuple[str, int]] = set()
        self._after: dict[tuple[str, int], list[str]] = {}

    def replace(self, ini: IniFile, line: int, text: str) -> None:
        self._replace[(ini.path, line)] = text

    def drop(self, ini: IniFile, line: int) -> None:
        self._drop.add((ini.path, line))

    def add(self, section: Section, text: str) -> None:
        self._after.setdefault((section.file.path, section.end - 1), []).append(text)

    def touched(self, ini: IniFile) -> bool:
        keys = {*self._replace, *self._drop, *self._after}
        return any(path == ini.path for path, _ in keys)

    def apply(self, ini: IniFile) -> str:
        out: list[str] = []
        for i, line in enumerate(ini.lines):
            key = (ini.path, i)
            if key not in self._drop:
                out.append(self._replace.get(key, line))
            out.extend(self._after.get(key, []))
        return "\n".join(out) + "\n"
