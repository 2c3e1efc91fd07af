"""Country databases from disk: MaxMind-format files and zone-file
directories, opened into the pure ``intel.geo`` objects.

``open_geo`` is what ``[intel.geoip]`` names, with errors that name the key;
``open_countries`` opens a path (a directory is zone files, a file a
MaxMind-format database, optionally walked into a range table). Opening and
walking a database takes seconds for GeoLite2: call these off the packets'
thread (the daemon does, on start and reload).
"""

from __future__ import annotations

from pathlib import Path

import maxminddb

from ..config import GeoConfig
from ..intel.feeds import parse_feed
from ..intel.geo import CACHE, Countries, CountryRanges, iso_code
from ..policy import PolicyError


class MaxMindCountries:
    """Countries from a MaxMind-format database, record by record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
        self.metadata = self._reader.metadata()

    def lookup(self, host: str) -> str | None:
        host = host.partition("%")[0]
        try:
            record = self._reader.get(host)
        except ValueError:  # not an address, or IPv6 in an IPv4-only database
            record = None
        if record is None and host.startswith("::ffff:") and "." in host:
            return self.lookup(host[7:])
        return iso_code(record)

    def ranges(self) -> CountryRanges:
        """The whole database as a range table (a walk over every network)."""
        return CountryRanges(
            (str(network), code)
            for network, record in self._reader
            if (code := iso_code(record)) is not None
        )

    def close(self) -> None:
        self._reader.close()


def zone_file_ranges(*directories: str | Path, max_bytes: int = 64 * 1024 * 1024) -> CountryRanges:
    """Zone files: one per country, named by its two-letter code (the name
    up to the first ``.`` or ``-``); other files are ignored. A country may
    have several files (an IPv4 and an IPv6 directory)."""
    pairs: list[tuple[str, str]] = []
    bad = 0
    for directory in directories:
        for path in sorted(Path(directory).iterdir()):
            code = path.name.split(".", 1)[0].split("-", 1)[0]
            if not (path.is_file() and len(code) == 2 and code.isascii() and code.isalpha()):
                continue
            if path.stat().st_size > max_bytes:
                raise ValueError(f"{path}: over {max_bytes} bytes")
            parsed = parse_feed(path.read_text("utf-8", errors="replace"))
            bad += parsed.bad
            pairs.extend((cidr, code) for cidr in parsed.entries)
    return CountryRanges(pairs, bad=bad)


def open_countries(
    path: str | Path, *, preload: bool = False, cache_size: int = CACHE
) -> Countries:
    """A directory is zone files; a file, a MaxMind-format database (walked
    into a range table when ``preload``)."""
    path = Path(path)
    if path.is_dir():
        return Countries(zone_file_ranges(path), cache_size)
    reader = MaxMindCountries(path)
    if not preload:
        return Countries(reader, cache_size)
    try:
        return Countries(reader.ranges(), cache_size)
    finally:
        reader.close()


def open_geo(geo: GeoConfig) -> Countries | None:
    """The country source ``[intel.geoip]`` names (None: none named).
    A MaxMind database is walked into a range table (``preload``) only
    when a country policy asks every packet. Raises PolicyError naming the key."""
    if geo.database is None and geo.zones is None:
        return None
    path = geo.database if geo.database is not None else geo.zones
    key = "database" if geo.database is not None else "zones"
    assert path is not None
    preload = geo.preload and bool(geo.allow_countries or geo.deny_countries)
    try:
        return open_countries(path, preload=preload)
    except (OSError, ValueError) as exc:  # maxminddb raises InvalidDatabaseError(RuntimeError)
        raise PolicyError(f"intel.geoip.{key}: cannot read {str(path)!r}: {exc}") from None
    except RuntimeError as exc:
        raise PolicyError(
            f"intel.geoip.{key}: {str(path)!r} is not a MaxMind-format database: {exc}"
        ) from None
