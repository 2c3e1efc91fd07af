"""The number classifier: what a dialled R-URI user is, as toll fraud sees it.

Operations: ``Dialplan(country, international_prefixes, trunk_prefixes)``
(the ``[dialplan]`` section), then ``plan.classify(dialled) -> Number`` for
each INVITE's R-URI user: the trunk-access prefix it was dialled behind
(``9``), its international prefix (``00``, ``011``, ``+``), the number in
E.164 digits and its country (the ``phonenumbers`` library: Google's
libphonenumber metadata, pure Python, no I/O), whether it leaves the home
country, and its ``tail``, the key that compares dial strings.

Why: toll-fraud callers try one premium or international number behind
every common trunk and international prefix until one routes
(``00972597562518``, ``011972597562518``, ``9011972597562518``,
``+972597562518``, ``000...``, ``900...``: research/deception.md §4). Every
such variant has the same tail, its E.164 digits (``972597562518``), so a
detector sees one destination tried behind several prefixes. Besides the
configured prefixes, the ones attackers use elsewhere are known too
(``WELL_KNOWN_TRUNKS``, ``WELL_KNOWN_INTERNATIONAL``): a North American
``011`` tried against a European PBX is still the same destination.

How a dial string is read: every reading is listed in this order, a trunk
prefix (or none) then an international prefix then a country code and a
number; with a home country, a national number behind a trunk prefix (or
none), its national prefix (``0`` in GB) included; the digits as E.164 with
no prefix at all (``448708752617``). Of the readings of a possible length
(the metadata's lengths for that country), the first the metadata calls
valid wins, else the first. Digits no reading places are compared by what
is left after the prefixes. Junk (letters, ``*97``, an extension, too long)
is not a phone number: its ``tail`` is empty and nothing compares it.
Nothing raises.

Bounds: a dial string longer than ``MAX_DIALLED`` characters is junk
unread; answers are cached per dial string (LRU, ``cache_size`` entries),
so a phone redialling costs one dict probe, and an attacker's spray of new
strings a few validity tests each (tens of µs: bench/dialplan.py).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import unquote

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber

MAX_DIALLED: Final = 64  # characters; longer is junk, unread
MAX_DIGITS: Final = 24  # digits with every prefix: E.164 is 15 at most
MIN_TAIL: Final = 6  # digits: shorter is an extension, not a destination
# trunk-access prefixes ("an outside line") and international prefixes
# seen in toll-fraud dialling (research/deception.md §4), besides the
# configured ones: 9 and 0 (outside line), 00 (ITU), 011 (North America),
# 0011 (Australia), 810 (Russia)
WELL_KNOWN_TRUNKS: Final = ("9", "0")
WELL_KNOWN_INTERNATIONAL: Final = ("00", "011", "0011", "810")
_VISUAL: Final = str.maketrans("", "", " -.()")  # RFC 3966 visual separators


@dataclass(frozen=True, slots=True)
class Number:
    """One dial string, classified (see the module doc)."""

    dialled: str  # as sent
    prefix: str = ""  # everything dialled before the number: trunk, international or national
    trunk: str = ""  # the trunk-access prefix stripped ("9"), or ""
    international_prefix: str = ""  # "00", "011", "+", or "" (national or none)
    e164: str | None = None  # the number's E.164 digits, no "+", where known
    country: str | None = None  # ISO 3166-1 alpha-2 of the number, where known
    international: bool = False  # leaves the home country (no home: dialled international)
    tail: str = ""  # the key of a destination: the E.164 digits, or the digits left; "" junk

    @property
    def is_number(self) -> bool:
        """Whether it reads as a phone number at all (not junk, not an extension)."""
        return bool(self.tail)


class Dialplan:
    """How numbers are dialled here (``[dialplan]``); ``classify`` is cached."""

    def __init__(
        self,
        country: str | None = None,
        international_prefixes: tuple[str, ...] | list[str] = ("00", "011"),
        trunk_prefixes: tuple[str, ...] | list[str] = (),
        cache_size: int = 4096,
    ) -> None:
        self.country = country.upper() if country else None
        self.international_prefixes = tuple(international_prefixes)
        self.trunk_prefixes = tuple(trunk_prefixes)
        self._home_code = phonenumbers.country_code_for_region(self.country) if self.country else 0
        # configured first (longest first), then none, then the well-known:
        # "0203..." in GB is a national number, not "203..." behind a trunk 0
        extra = tuple(p for p in WELL_KNOWN_TRUNKS if p not in self.trunk_prefixes)
        self._trunks = (*sorted(self.trunk_prefixes, key=len, reverse=True), "", *extra)
        self._internationals = _ordered(
            tuple(p for p in self.international_prefixes if p != "+"), WELL_KNOWN_INTERNATIONAL
        )
        # the home country's national prefix, for national numbers ("0" in
        # GB, "1" in North America); a country whose rule rewrites digits
        # (Argentina, Brazil) is left to phonenumbers.parse, slower
        meta = phonenumbers.PhoneMetadata.metadata_for_region(self.country or "")
        self._national_prefix: re.Pattern[str] | None = None
        self._rewrites = False
        if meta is not None and meta.national_prefix_for_parsing:
            self._national_prefix = re.compile(meta.national_prefix_for_parsing)
            self._rewrites = meta.national_prefix_transform_rule is not None
        self.classify = functools.lru_cache(maxsize=cache_size)(self._classify)

    def __repr__(self) -> str:
        return (
            f"Dialplan(country={self.country!r}, international_prefixes="
            f"{self.international_prefixes!r}, trunk_prefixes={self.trunk_prefixes!r})"
        )

    # -------------------------------------------------------------- inside

    def _classify(self, dialled: str) -> Number:
        if len(dialled) > MAX_DIALLED:
            return Number(dialled)
        text = (unquote(dialled) if "%" in dialled else dialled).translate(_VISUAL)
        trunk, plus, digits = text.rpartition("+")  # "+44...", or "9+44..." behind a trunk
        if (
            not digits.isascii()
            or not digits.isdigit()
            or len(text) > MAX_DIGITS
            or (plus and trunk and not (trunk.isdigit() and trunk in self._trunks))
        ):
            return Number(dialled)
        if plus:
            readings = [_Reading(trunk + "+", trunk, "+", _international(digits))]
            fallback = (trunk, "+", digits)
        else:
            readings, fallback = self._readings(digits)
        # the first reading the metadata calls valid, else the first of a
        # possible length (the validity test costs 10-80 µs: only for a choice)
        possible = [r for r in readings if _possible(r.number)]
        best = possible[0] if len(possible) == 1 else None
        if best is None and possible:
            best = next((r for r in possible if _valid(r.number)), possible[0])
        if best is None or best.number is None:
            return self._unknown(dialled, *fallback)
        return self._number(dialled, best, best.number)

    def _readings(self, digits: str) -> tuple[list[_Reading], tuple[str, str, str]]:
        """Every way to read ``digits`` (see the module doc), in order, and
        the split to compare by when none places the number."""
        readings = []
        fallback = ("", "", digits)
        # a trunk (or none), then an international prefix
        for t in self._trunks:
            if not digits.startswith(t):
                continue
            for i in self._internationals:
                if digits.startswith(i, len(t)):
                    rest = digits[len(t) + len(i) :]
                    readings.append(_Reading(t + i, t, i, _international(rest)))
                    if fallback[2] == digits:
                        fallback = (t, i, rest)
        # a national number of the home country, behind a trunk (or none)
        if self.country is not None:
            for t in self._trunks:
                if digits.startswith(t):
                    readings += self._national(t, digits[len(t) :])
        readings.append(_Reading("", "", "", _international(digits)))  # "44...", no prefix
        return readings, fallback

    def _national(self, trunk: str, rest: str) -> list[_Reading]:
        """``rest`` read as a number of the home country: without its
        national prefix, then as it is (Italy keeps its 0)."""
        if self._rewrites:
            number = _parse(rest, self.country)
            if number is None or number.country_code != self._home_code:
                return []
            significant = phonenumbers.national_significant_number(number)
            before = rest[: len(rest) - len(significant)] if rest.endswith(significant) else ""
            return [_Reading(trunk + before, trunk, "", number)]
        readings = []
        match = self._national_prefix.match(rest) if self._national_prefix else None
        if match is not None and match.end():
            before = rest[: match.end()]
            readings.append(
                _Reading(trunk + before, trunk, "", _make(self._home_code, rest[match.end() :]))
            )
        readings.append(_Reading(trunk, trunk, "", _make(self._home_code, rest)))
        return readings

    def _number(self, dialled: str, reading: _Reading, number: PhoneNumber) -> Number:
        code = number.country_code or 0
        e164 = f"{code}{phonenumbers.national_significant_number(number)}"
        country = phonenumbers.region_code_for_number(number) or _main_region(code)
        if self.country is None:
            international = bool(reading.international_prefix)
        elif country is not None:
            international = country != self.country
        else:
            international = code != self._home_code
        return Number(
            dialled,
            reading.prefix,
            reading.trunk,
            reading.international_prefix,
            e164,
            country,
            international,
            e164,
        )

    def _unknown(self, dialled: str, trunk: str, intl: str, rest: str) -> Number:
        """Digits no reading places: compared by what is left after the prefixes."""
        tail = rest if len(rest) >= MIN_TAIL else ""
        international = bool(intl and tail)
        return Number(dialled, trunk + intl, trunk, intl, international=international, tail=tail)


class _Reading(NamedTuple):
    prefix: str
    trunk: str
    international_prefix: str
    number: PhoneNumber | None


def _ordered(configured: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    extra = tuple(p for p in known if p not in configured)
    return tuple(sorted(configured, key=len, reverse=True)) + tuple(
        sorted(extra, key=len, reverse=True)
    )


def _international(rest: str) -> PhoneNumber | None:
    """``rest`` as a country code and a national number (codes are prefix-free:
    at most one of its first 1-3 digits is one), built without
    phonenumbers.parse, which costs ten times as much."""
    if not rest or rest[0] == "0":  # no country code begins with 0
        return None
    for size in (1, 2, 3):
        code = int(rest[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return _make(code, rest[size:])
    return None


def _make(code: int, significant: str) -> PhoneNumber | None:
    if not significant or len(significant) > 17:
        return None
    zeros = len(significant) - len(significant.lstrip("0"))
    number = PhoneNumber(country_code=code, national_number=int(significant))
    if zeros:  # Italy's numbers keep their leading 0
        number.italian_leading_zero = True
        number.number_of_leading_zeros = zeros if zeros > 1 else None
    return number


def _parse(text: str, region: str | None) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _possible(number: PhoneNumber | None) -> bool:
    return number is not None and bool(phonenumbers.is_possible_number(number))


def _valid(number: PhoneNumber | None) -> bool:
    return number is not None and bool(phonenumbers.is_valid_number(number))


def _main_region(code: int) -> str | None:
    region = phonenumbers.region_code_for_country_code(code)
    return None if region in ("ZZ", "001") else region


_DEFAULT = Dialplan()


def classify(dialled: str, plan: Dialplan | None = None) -> Number:
    """``dialled`` classified by ``plan`` (default: no home country; ``00``
    and ``011`` as international prefixes)."""
    return (plan or _DEFAULT).classify(dialled)
