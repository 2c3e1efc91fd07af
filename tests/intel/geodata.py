"""Small country databases for the tests, over documentation ranges.

``write_mmdb`` writes a MaxMind-format database in GeoLite2-Country's record
shape (so the reader is tested on the real shape); ``write_zones`` writes
the same ranges as country zone files. Countries are user-assigned codes
(XA, XB, XC): no real country is implied.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

RANGES: dict[str, str] = {
    "192.0.2.0/24": "XA",
    "198.51.100.0/24": "XB",
    "203.0.113.0/24": "XA",
    "233.252.0.0/24": "XC",
    "2001:db8::/32": "XB",
    "3fff::/20": "XC",
}
# a network with no ``country`` but a ``registered_country`` (as GeoLite2
# has for some satellite and anycast ranges)
REGISTERED_ONLY: dict[str, str] = {"100.64.0.0/10": "XD"}
UNKNOWN = ("192.0.3.1", "10.0.0.1", "2001:db9::1", "::1")


def record(code: str) -> dict[str, Any]:
    """A GeoLite2-Country record."""
    return {
        "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
        "country": {
            "geoname_id": 1000 + ord(code[1]),
            "iso_code": code,
            "names": {"de": f"Land {code}", "en": f"Country {code}", "fr": f"Pays {code}"},
        },
        "registered_country": {
            "geoname_id": 1000 + ord(code[1]),
            "iso_code": code,
            "names": {"en": f"Country {code}"},
        },
    }


def registered_record(code: str) -> dict[str, Any]:
    return {"registered_country": {"iso_code": code, "names": {"en": f"Country {code}"}}}


def write_mmdb(
    path: Path,
    ranges: Mapping[str, str] = RANGES,
    registered: Mapping[str, str] = REGISTERED_ONLY,
) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    by_code: dict[str, list[str]] = {}
    for cidr, code in ranges.items():
        by_code.setdefault(code, []).append(cidr)
    for code, cidrs in by_code.items():
        writer.insert_network(IPSet(cidrs), record(code))
    for cidr, code in registered.items():
        writer.insert_network(IPSet([cidr]), registered_record(code))
    writer.to_db_file(str(path))
    return path


def write_zones(directory: Path, ranges: Mapping[str, str] = RANGES, style: str = "zone") -> Path:
    """One file per country: ``xa.zone`` (ipdeny's style) or ``XA.txt``."""
    directory.mkdir(parents=True, exist_ok=True)
    by_code: dict[str, list[str]] = {}
    for cidr, code in ranges.items():
        by_code.setdefault(code, []).append(cidr)
    for code, cidrs in by_code.items():
        name = f"{code.lower()}.zone" if style == "zone" else f"{code}.txt"
        (directory / name).write_text(f"# {code}\n" + "\n".join(cidrs) + "\n")
    return directory
