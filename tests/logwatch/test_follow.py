"""The file follower: whole lines only, both kinds of rotation, and a
restart from the remembered position, each line read exactly once."""

from __future__ import annotations

import os
from pathlib import Path

from sipwarden.logwatch.follow import FileFollower


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def lines(n: int, start: int = 0) -> str:
    return "".join(f"line {i:05d} of the log\n" for i in range(start, start + n))


def numbers(got: list[bytes]) -> list[int]:
    return [int(line.split()[1]) for line in got]


def test_whole_lines_only_and_a_partial_waits(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_text("first\nsecond\nthi")
    f = FileFollower(log)
    assert f.read() == [b"first", b"second"]
    assert f.read() == []
    append(log, "rd\r\nfourth\n")
    assert f.read() == [b"third", b"fourth"]
    assert f.position.offset == log.stat().st_size


def test_missing_file_then_created(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    f = FileFollower(log)
    assert f.read() == [] and not f.exists
    log.write_text("hello\n")
    assert f.read() == [b"hello"] and f.exists


def test_rename_and_create_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_text(lines(10))
    clock = [0.0]
    f = FileFollower(log, grace=5.0, clock=lambda: clock[0])
    got = f.read()
    append(log, lines(5, 10))
    log.rename(tmp_path / "messages.1")
    log.write_text(lines(3, 20))  # the new file
    got += f.read()
    # the PBX has not reopened yet: it writes on into the renamed file
    append(tmp_path / "messages.1", lines(5, 15))
    got += f.read()
    append(log, lines(2, 23))
    clock[0] = 100.0
    got += f.read()
    got += f.read()
    assert sorted(numbers(got)) == list(range(25))
    assert f.events["renamed"] == 1


def test_copy_truncate_reads_the_copy_first(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_text(lines(10))
    f = FileFollower(log)
    got = f.read()
    append(log, lines(5, 10))  # written, not yet read, when logrotate copies
    (tmp_path / "messages.1").write_bytes(log.read_bytes())
    os.truncate(log, 0)
    append(log, lines(4, 15))
    got += f.read()
    assert numbers(got) == list(range(19))
    assert f.events["truncated"] == 1
    append(log, lines(1, 19))
    assert numbers(f.read()) == [19]


def test_truncated_and_regrown_past_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_text(lines(3))
    f = FileFollower(log)
    assert numbers(f.read()) == [0, 1, 2]
    os.truncate(log, 0)
    append(log, lines(10, 100))  # longer than before: only the first bytes tell
    assert numbers(f.read()) == list(range(100, 110))


def test_restart_goes_on_from_the_position(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_text(lines(10))
    f = FileFollower(log)
    assert len(f.read()) == 10
    pos = f.position
    f.close()
    append(log, lines(5, 10))
    again = FileFollower(log, pos)
    assert numbers(again.read()) == list(range(10, 15))


def test_restart_after_a_rename_while_away(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_text(lines(10))
    f = FileFollower(log)
    f.read()
    pos = f.position
    f.close()
    append(log, lines(5, 10))
    log.rename(tmp_path / "messages.1")
    log.write_text(lines(5, 15))
    again = FileFollower(log, pos)
    assert numbers(again.read()) == list(range(10, 20))
    assert again.events["caught-up"] == 1


def test_restart_after_a_copy_truncate_while_away(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_text(lines(10))
    f = FileFollower(log)
    f.read()
    pos = f.position
    f.close()
    append(log, lines(5, 10))
    (tmp_path / "messages-20261206").write_bytes(log.read_bytes())
    os.truncate(log, 0)
    append(log, lines(2, 15))
    again = FileFollower(log, pos)
    assert numbers(again.read()) == list(range(10, 17))


def test_a_line_too_long_is_cut(tmp_path: Path) -> None:
    log = tmp_path / "messages"
    log.write_bytes(b"x" * 300 + b"\nshort\n")
    f = FileFollower(log, max_line=100, chunk=100)
    got = [line for _ in range(10) for line in f.read()]
    assert got[0] == b"x" * 100 and got[-1] == b"short"
    assert b"".join(got[:-1]) == b"x" * 300
