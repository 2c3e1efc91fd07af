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

How a dial string is read, first match wins: a trunk prefix (or none), an
international prefix, then a country code and a number of a possible
length; else (with a home country) a national number, its national prefix
(``0`` in GB) included; else the digits as E.164 with no prefix at all
(``448708752617``). A number the metadata calls valid wins over one of
merely possible length. Junk (letters, ``*97``, an extension, too long) is
not a phone number: its ``tail`` is empty and nothing compares it. Nothing
raises.

Bounds: a dial string longer than ``MAX_DIALLED`` characters is junk
unread; answers are cached per dial string (LRU, ``cache_size`` entries),
so a phone redialling costs one dict probe and an attacker's spray of new
strings a bounded amount of work each (a few parses).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final
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
            return self._international(dialled, trunk, "+", digits) or self._unknown(
                dialled, trunk, "+", digits
            )
        # a trunk (or none), then an international prefix: valid first, then possible
        candidates = [
            (t, i, digits[len(t) + len(i) :])
            for t in self._trunks
            for i in self._internationals
            if digits.startswith(t + i)
        ]
        for strict in (True, False):
            for trunk, intl, rest in candidates:
                found = self._international(dialled, trunk, intl, rest, strict)
                if found is not None:
                    return found
            if self.country is not None:
                for trunk in self._trunks:
                    if digits.startswith(trunk):
                        found = self._national(dialled, trunk, digits[len(trunk) :], strict)
                        if found is not None:
                            return found
            found = self._international(dialled, "", "", digits, strict)
            if found is not None:
                return found
        trunk, intl, rest = candidates[0] if candidates else ("", "", digits)
        return self._unknown(dialled, trunk, intl, rest)

    def _international(
        self, dialled: str, trunk: str, intl: str, rest: str, strict: bool = False
    ) -> Number | None:
        """``rest`` read as a country code and a number (after ``trunk`` and ``intl``)."""
        number = _parse("+" + rest, None)
        if number is None or not _fits(number, strict):
            return None
        e164 = f"{number.country_code}{phonenumbers.national_significant_number(number)}"
        if e164 != rest:  # the library dropped something (a stray national prefix): not this
            return None
        return self._number(dialled, trunk + intl, trunk, intl, number, e164)

    def _national(self, dialled: str, trunk: str, rest: str, strict: bool) -> Number | None:
        """``rest`` read as a number of the home country (its national prefix included)."""
        number = _parse(rest, self.country)
        if number is None or not _fits(number, strict):
            return None
        significant = phonenumbers.national_significant_number(number)
        e164 = f"{number.country_code}{significant}"
        before = rest[: len(rest) - len(significant)] if rest.endswith(significant) else ""
        # "44..." dialled without "+" in GB reads as national with its
        # country code: that is the number with no prefix, not a national prefix
        if before.endswith(str(number.country_code)) and rest.startswith(before):
            before = before[: -len(str(number.country_code))]
        return self._number(dialled, trunk + before, trunk, "", number, e164)

    def _number(
        self, dialled: str, prefix: str, trunk: str, intl: str, number: PhoneNumber, e164: str
    ) -> Number:
        country = phonenumbers.region_code_for_number(number) or _main_region(
            number.country_code or 0
        )
        if self.country is None:
            international = bool(intl)
        elif country is not None:
            international = country != self.country
        else:
            international = number.country_code != self._home_code
        return Number(dialled, prefix, trunk, intl, e164, country, international, e164)

    def _unknown(self, dialled: str, trunk: str, intl: str, rest: str) -> Number:
        """Digits no reading places: compared by what is left after the prefixes."""
        tail = rest if len(rest) >= MIN_TAIL else ""
        international = bool(intl and tail)
        return Number(dialled, trunk + intl, trunk, intl, international=international, tail=tail)


def _ordered(configured: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    extra = tuple(p for p in known if p not in configured)
    return tuple(sorted(configured, key=len, reverse=True)) + tuple(
        sorted(extra, key=len, reverse=True)
    )


def _parse(text: str, region: str | None) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _fits(number: PhoneNumber, strict: bool) -> bool:
    if strict:
        return bool(phonenumbers.is_valid_number(number))
    return bool(phonenumbers.is_possible_number(number))


def _main_region(code: int) -> str | None:
    region = phonenumbers.region_code_for_country_code(code)
    return None if region in ("ZZ", "001") else region


_DEFAULT = Dialplan()


def classify(dialled: str, plan: Dialplan | None = None) -> Number:
    """``dialled`` classified by ``plan`` (default: no home country; ``00``
    and ``011`` as international prefixes)."""
    return (plan or _DEFAULT).classify(dialled)
