"""The store file itself: what is wrong with it is one line naming it; it
is private to its owner; a file from an older release opens and one from a
newer release is refused."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from sipwarden.store import BanStore, StoreError
from sipwarden.store.intel import IntelStore
from sipwarden.store.schema import VERSION

from ..disk import fill, small_disk

DATA = Path(__file__).parent.parent / "data" / "store"
RELEASE_2026_12 = DATA / "release-2026-12.db"  # written by the release before schema versions


def refusal(path: Path) -> str:
    with pytest.raises(StoreError) as caught:
        BanStore(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_store_written_by_the_release_before_versions_opens_and_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sipwarden.db"
    shutil.copy(RELEASE_2026_12, path)
    store = BanStore(path)
    try:
        bans = store.load()
        assert [(b.target, b.detector) for b in bans] == [
            ("203.0.113.9", "rate.requests"),
            ("192.0.2.7", "auth.brute-force"),
            ("198.51.100.0/24", "operator"),
        ]
        assert [b["ip"] for b in store.in_force(1765000300.0)] == ["192.0.2.7", "198.51.100.0/24"]
    finally:
        store.close()
    IntelStore(path).close()  # the other store on the same file opens it too
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION


def test_a_store_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "sipwarden.db"
    BanStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {VERSION + 1}")
    message = refusal(path)
    assert f"written by a newer sipwarden (schema {VERSION + 1}" in message


@pytest.mark.parametrize(
    "content",
    [b"hello, not a database\n" * 100, RELEASE_2026_12.read_bytes()[:1500], os.urandom(8192)],
    ids=["text", "truncated", "noise"],
)
def test_a_file_that_is_not_a_store_is_one_line_saying_what_to_do(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "sipwarden.db"
    path.write_bytes(content)
    message = refusal(path)
    assert "is not a sipwarden database" in message and "move it aside" in message
    assert path.read_bytes() == content  # nothing written over it


def test_a_folder_or_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    assert "is a folder" in refusal(tmp_path)
    assert "does not exist" in refusal(tmp_path / "nowhere" / "sipwarden.db")


def test_the_store_is_private_to_its_owner(tmp_path: Path) -> None:
    """It holds every banned address and the evidence: 0600, and an older
    store left readable by all is narrowed."""
    fresh = tmp_path / "new.db"
    old_umask = os.umask(0o022)
    try:
        BanStore(fresh).close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    old = tmp_path / "old.db"
    shutil.copy(RELEASE_2026_12, old)
    old.chmod(0o644)
    BanStore(old).close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


def test_a_full_disk_at_start_is_one_line(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        fill(disk)
        message = refusal(disk / "sipwarden.db")
    assert "the disk is full" in message and "free some space" in message


def test_a_second_store_opened_in_a_process_keeps_the_first_ones_writes_visible(
    tmp_path: Path,
) -> None:
    """Opening a second connection (the fleet's cursor beside the bans) must
    not drop the first one's lock: another process that opens and closes the
    file (`bans show`) would take itself for the last user and delete the
    WAL, and the daemon's later commits would go where no one reads them."""
    import subprocess
    import sys

    from sipwarden.store import FleetCursor
    from sipwarden.values import Ban, Change

    path = tmp_path / "sipwarden.db"
    bans = BanStore(path)
    cursor = FleetCursor(path)  # the second connection of this process
    read = (
        "import sys; from sipwarden.store import BanStore; s = BanStore(sys.argv[1]);"
        " print(len(s.history('203.0.113.9'))); s.close()"
    )
    try:

        def rows_seen_elsewhere() -> int:
            done = subprocess.run(
                [sys.executable, "-c", read, str(path)], capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 0, done.stderr
            return int(done.stdout)

        assert rows_seen_elsewhere() == 0  # another process opened and closed the file
        ban = Ban("203.0.113.9", "test", "operator", 1000.0, 2000.0)
        bans.apply([Change("add", ban)], 1000.0)
        cursor.save("1-0", "epoch")
        assert rows_seen_elsewhere() == 1
        assert os.path.exists(f"{path}-wal")
    finally:
        cursor.close()
        bans.close()
