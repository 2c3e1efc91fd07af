"""The number classifier: real toll-fraud dial strings (research/deception.md §4)
read to one destination whatever the prefixes, national numbers, and junk."""

from __future__ import annotations

import pytest

from sipwarden.intel.numbers import MAX_DIALLED, Dialplan, Number, classify

GB = Dialplan("GB", ["00"], ["9"])  # the contract's example [dialplan]
US = Dialplan("US", ["011"], ["9"])


# the FreeSWITCH log: one source, one UK 0870 number, every prefix
@pytest.mark.parametrize(
    ("dialled", "prefix", "trunk", "international_prefix"),
    [
        ("011448708752617", "011", "", "011"),
        ("9011448708752617", "9011", "9", "011"),
        ("448708752617", "", "", ""),
        ("00448708752617", "00", "", "00"),
        ("000448708752617", "000", "0", "00"),
        ("+448708752617", "+", "", "+"),
    ],
)
def test_one_uk_number_behind_every_prefix_has_one_tail(
    dialled, prefix, trunk, international_prefix
) -> None:
    for plan in (GB, US, Dialplan()):
        number = plan.classify(dialled)
        assert number.dialled == dialled
        assert number.tail == number.e164 == "448708752617", plan
        assert number.country == "GB"
        assert (number.prefix, number.trunk, number.international_prefix) == (
            prefix,
            trunk,
            international_prefix,
        ), plan
    # from the UK it is a national number, from North America an international one
    assert not GB.classify(dialled).international
    assert US.classify(dialled).international


@pytest.mark.parametrize(
    "dialled",
    [
        "00972597562518",  # the Asterisk log, context guest
        "000972597562518",
        "011972597562518",
        "9011972597562518",
        "+972597562518",
        "900972597562518",
        "9+972597562518",
        "%2B972597562518",  # "+" escaped in the R-URI
        "00 972 59-756-2518",  # visual separators (RFC 3966)
    ],
)
def test_the_palestinian_mobile_range_behind_every_prefix(dialled) -> None:
    for plan in (GB, US, Dialplan()):
        number = plan.classify(dialled)
        assert number.e164 == number.tail == "972597562518"
        assert number.country in ("PS", "IL")  # +972 59: phonenumbers says IL
        assert number.international and number.is_number


def test_other_research_dial_strings() -> None:
    sipcli = GB.classify("900442037690000")  # trunk 9, then 00 44 20...
    assert (sipcli.trunk, sipcli.international_prefix, sipcli.e164) == ("9", "00", "442037690000")
    assert sipcli.country == "GB" and not sipcli.international
    sippts = GB.classify("0046123456789")
    assert (sippts.prefix, sippts.e164, sippts.country) == ("00", "46123456789", "SE")
    assert sippts.international
    tpot = GB.classify("0075346850780296")  # no plan places it: compared by its digits
    assert tpot.e164 is None and tpot.tail == "75346850780296" and tpot.prefix == "00"


def test_national_numbers_and_the_home_country() -> None:
    london = GB.classify("02037690000")
    assert (london.prefix, london.trunk, london.e164) == ("0", "", "442037690000")
    assert london.country == "GB" and not london.international
    outside = GB.classify("902037690000")  # the same, behind the trunk prefix
    assert (outside.prefix, outside.trunk, outside.tail) == ("90", "9", london.tail)
    # North American dialling: ten digits, 1 + ten, 9 1 + ten; 011 abroad
    for dialled in ("2125550123", "12125550123", "912125550123", "+12125550123"):
        number = US.classify(dialled)
        assert number.e164 == "12125550123" and number.country == "US", dialled
        assert not number.international
    assert US.classify("01144870875261").international
    # +1 876 is Jamaica: the classic toll-fraud "national-looking" number
    jamaica = US.classify("18765550123")
    assert jamaica.country == "JM" and jamaica.international


def test_without_a_home_country_international_is_what_was_dialled_so() -> None:
    assert classify("00972597562518").international
    assert classify("+442037690000").international
    national = classify("02037690000")
    assert not national.international and national.e164 is None
    assert national.tail == "02037690000"  # still compared, by its digits


@pytest.mark.parametrize(
    "dialled",
    [
        *("", "100", "*97", "#31#", "alice", "sip%2Bx", "+", "00", "9", "+44+44", "00%zz"),
        *("1" * 30, "9" * (MAX_DIALLED + 1), "x" * 10_000),  # too long
        *("0\x00972597562518", "٠٠٩٧٢٥٩٧٥٦٢٥١٨"),  # a NUL; Arabic-Indic digits
    ],
)
def test_junk_and_extensions_are_not_numbers(dialled) -> None:
    number = GB.classify(dialled)
    assert isinstance(number, Number) and number.dialled == dialled
    assert not number.is_number and number.tail == ""
    assert number.e164 is None and not number.international


def test_answers_are_cached_and_the_cache_is_bounded() -> None:
    plan = Dialplan("GB", ["00"], ["9"], cache_size=4)
    first = plan.classify("00972597562518")
    assert plan.classify("00972597562518") is first
    for n in range(10):
        plan.classify(f"0044203769000{n}")
    info = plan.classify.cache_info()
    assert info.currsize == 4 and info.hits == 1
