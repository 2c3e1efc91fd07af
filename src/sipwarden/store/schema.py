"""The store file's tables, and how a file written by an older release is
brought up to date.

One SQLite file holds every table (bans, feeds, and those later releases
add), so one number says what a file holds: SQLite's ``user_version``.
``MIGRATIONS[n]`` takes a file from version ``n`` to ``n + 1``; ``migrate``
runs those a file lacks, each in its own transaction with its version bump,
so a crash leaves a file at a version it fully has. Rules for whoever adds a
table or a column: append a migration, never edit one that shipped (a file
in the field ran it as it was); each must be safe on a file from before
versions existed (version 0: the tables of December 2026, so ``IF NOT
EXISTS``).

A file from a newer release (a version above ``len(MIGRATIONS)``) is refused
rather than written: this release would not know what it breaks.
"""

from __future__ import annotations

from typing import Final

# version 0 -> 1: the tables of the December 2026 release, which had no version
_V1: Final = """
CREATE TABLE IF NOT EXISTS bans (
    id          INTEGER PRIMARY KEY,
    target      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detector    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL,               -- NULL: permanent
    offence     INTEGER NOT NULL,
    evidence    TEXT NOT NULL,      -- JSON array of strings
    ended_at    REAL                -- lifted or expired; NULL while in force
);
CREATE INDEX IF NOT EXISTS bans_target ON bans (target, created_at);
CREATE INDEX IF NOT EXISTS bans_open ON bans (ended_at) WHERE ended_at IS NULL;

CREATE TABLE IF NOT EXISTS intel_feeds (
    feed            TEXT PRIMARY KEY,
    last_id         TEXT NOT NULL,
    last_success    REAL,
    last_error      TEXT,
    last_error_at   REAL,
    last_full       REAL,               -- when the last full re-pull started
    sent            TEXT NOT NULL,      -- JSON array: recent request times
    info            TEXT,               -- JSON object: a list feed's source, size, bad lines
    changed_at      REAL,               -- when the entries last changed
    updated_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS intel_entries (
    feed        TEXT NOT NULL,
    address     TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    PRIMARY KEY (feed, address)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS intel_entries_seen ON intel_entries (feed, last_seen);
"""

# 1 -> 2: events and traffic flows (observe/; written by store/observe.py)
_V2: Final = """
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,    -- the live stream follows it
    time        REAL NOT NULL,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    fields      TEXT NOT NULL           -- JSON object
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_source ON events (source, time);

CREATE TABLE flows (
    id                  INTEGER PRIMARY KEY,
    minute              REAL NOT NULL,  -- the minute's start (epoch seconds)
    source              TEXT NOT NULL,
    source_port         INTEGER,        -- NULL: counted by the kernel, which keeps no port
    destination         TEXT NOT NULL,
    destination_port    INTEGER NOT NULL,
    transport           TEXT NOT NULL,
    first_seen          REAL NOT NULL,
    last_seen           REAL NOT NULL,
    packets             INTEGER NOT NULL,
    bytes               INTEGER NOT NULL,
    peak_pps            INTEGER NOT NULL,
    methods             TEXT NOT NULL,  -- JSON objects: name -> count
    answers             TEXT NOT NULL,
    verdicts            TEXT NOT NULL
);
CREATE INDEX flows_minute ON flows (minute);
CREATE INDEX flows_source ON flows (source, minute);
"""

# 2 -> 3: the honeypot's call records, one per (source, number) (store/honeypot.py)
_V3: Final = """
CREATE TABLE honeypot_calls (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    number          TEXT NOT NULL,      -- the Request-URI user as dialled
    count           INTEGER NOT NULL,
    first_seen      REAL NOT NULL,
    last_seen       REAL NOT NULL,
    source_port     INTEGER,            -- the latest call's details from here on
    transport       TEXT,
    to_user         TEXT,
    from_user       TEXT,
    from_tag        TEXT,
    contact         TEXT,
    via             TEXT,               -- the top Via's sent-by
    user_agent      TEXT,
    media_address   TEXT,               -- the SDP's c=
    media_port      INTEGER,            -- its first m= port
    digest_user     TEXT,
    normalised      TEXT,
    prefix          TEXT,
    country         TEXT,
    UNIQUE (source, number)
);
CREATE INDEX honeypot_calls_seen ON honeypot_calls (last_seen);
"""

# 3 -> 4: where logwatch mode is in each followed log (store/logwatch.py)
_V4: Final = """
CREATE TABLE logwatch_positions (
    source      TEXT PRIMARY KEY,   -- a file's path, or journal:<unit>
    device      INTEGER,            -- the file read: st_dev, st_ino
    inode       INTEGER,
    offset      INTEGER NOT NULL,   -- bytes read: the end of the last whole line
    head        BLOB,               -- the file's first bytes (a copy or a new file is told apart)
    cursor      TEXT,               -- the journal's cursor after the last entry read
    updated_at  REAL NOT NULL
) WITHOUT ROWID;
"""

# 4 -> 5: the fleet (fleet/): the node that made each ban ("": this one), and
# where this node is in the fleet's ban stream (store/fleet.py)
_V5: Final = """
ALTER TABLE bans ADD COLUMN origin TEXT NOT NULL DEFAULT '';
CREATE TABLE fleet_state (
    key         TEXT PRIMARY KEY,   -- "stream-id", "epoch"
    value       TEXT NOT NULL
) WITHOUT ROWID;
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5)
VERSION: Final = len(MIGRATIONS)  # what this release writes
