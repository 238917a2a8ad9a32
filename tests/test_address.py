"""Street splitting, house numbers from WooCommerce meta, state and country codes, addresses."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from adapters.address import build_address, country, house_number_from_meta, split_street, subdivision
from adapters.sendcloud import Address

# ---------------------------------------------------------------- split_street

SPLITS = [
    # number after the street
    ("Keizersgracht 123", "Keizersgracht", "123"),
    ("Laan van Meerdervoort 52A", "Laan van Meerdervoort", "52A"),
    ("Hauptstraße 5a", "Hauptstraße", "5a"),
    ("Rue Neuve 12 bus 3", "Rue Neuve", "12 bus 3"),
    ("Avenue Louise 54 bte 7", "Avenue Louise", "54 bte 7"),
    ("Górna 22", "Górna", "22"),
    ("Avenida Paulista, 1578", "Avenida Paulista", "1578"),
    ("Av. Brasil, 432", "Av. Brasil", "432"),
    ("Trojanowska 71", "Trojanowska", "71"),
    ("Chestnut Street 92", "Chestnut Street", "92"),
    ("Calle Mayor, 5", "Calle Mayor", "5"),
    ("Via Roma n. 5", "Via Roma", "5"),
    ("Hauptstraße Nr. 5", "Hauptstraße", "5"),
    ("Postbus 123", "Postbus", "123"),
    # number before the street
    ("10 Rue de Rivoli", "Rue de Rivoli", "10"),
    ("10, rue de Rivoli", "rue de Rivoli", "10"),
    ("221B Baker Street", "Baker Street", "221B"),
    ("350 Fifth Avenue", "Fifth Avenue", "350"),
    ("969 Market", "Market", "969"),
    ("8623 Hemlock Hill Drive, Houston", "Hemlock Hill Drive, Houston", "8623"),
    ("1600 Amphitheatre Pkwy", "Amphitheatre Pkwy", "1600"),
    ("12-14 Main Street", "Main Street", "12-14"),
    ("350 Fifth Avenue Suite 12", "Fifth Avenue Suite 12", "350"),
    ("2 Rue du 8 Mai 1945", "Rue du 8 Mai 1945", "2"),
    ("12 Route 66", "Route 66", "12"),
    # ranges and suffixes
    ("Hoofdstraat 12-14", "Hoofdstraat", "12-14"),
    ("Hoofdstraat 12 - 14", "Hoofdstraat", "12 - 14"),
    ("Hoofdstraat 12\u201314", "Hoofdstraat", "12\u201314"),
    ("Rue de la Paix 7 bis", "Rue de la Paix", "7 bis"),
    ("Rue de la Paix 7bis", "Rue de la Paix", "7bis"),
    ("Hauptstraße 5 a", "Hauptstraße", "5 a"),
    ("Str. 3/1", "Str.", "3/1"),
    ("Kerkstraat 1 A", "Kerkstraat", "1 A"),
    ("Kerkstraat 1-A", "Kerkstraat", "1-A"),
    ("Keizersgracht 123 III", "Keizersgracht", "123 III"),
    ("Keizersgracht 123 hs", "Keizersgracht", "123 hs"),
    ("C/ Alcalá 23, 2º", "C/ Alcalá", "23, 2º"),
    ("Calle Mayor 5, 3º B", "Calle Mayor", "5, 3º B"),
    # French, Belgian and Italian suffixes, number first: the suffix belongs to the number
    ("12 bis Rue Victor Hugo", "Rue Victor Hugo", "12 bis"),
    ("12bis Rue Victor Hugo", "Rue Victor Hugo", "12bis"),
    ("12 BIS Rue Victor Hugo", "Rue Victor Hugo", "12 BIS"),
    ("12-bis Rue Victor Hugo", "Rue Victor Hugo", "12-bis"),
    ("12 Bis, rue Victor Hugo", "rue Victor Hugo", "12 Bis"),
    ("3 ter avenue Foch", "avenue Foch", "3 ter"),
    ("3TER avenue Foch", "avenue Foch", "3TER"),
    ("7 quater Boulevard Haussmann", "Boulevard Haussmann", "7 quater"),
    ("7-quater Boulevard Haussmann", "Boulevard Haussmann", "7-quater"),
    ("9 quinquies Chemin des Vignes", "Chemin des Vignes", "9 quinquies"),
    ("9Quinquies Chemin des Vignes", "Chemin des Vignes", "9Quinquies"),
    ("12 A Rue Victor Hugo", "Rue Victor Hugo", "12 A"),
    ("12 a, rue Victor Hugo", "rue Victor Hugo", "12 a"),
    ("12a Rue Victor Hugo", "Rue Victor Hugo", "12a"),
    ("12/A Rue Victor Hugo", "Rue Victor Hugo", "12/A"),
    ("12-A Rue Victor Hugo", "Rue Victor Hugo", "12-A"),
    ("10/B Via Roma", "Via Roma", "10/B"),
    ("12-14 Rue Victor Hugo", "Rue Victor Hugo", "12-14"),
    ("12-14 bis Rue Victor Hugo", "Rue Victor Hugo", "12-14 bis"),
    ("  12   bis   Rue Victor Hugo ", "Rue Victor Hugo", "12 bis"),
    # ... but a suffix is a whole token: never the start of a street word
    ("12 Avenue Foch", "Avenue Foch", "12"),
    ("12 A Avenue Foch", "Avenue Foch", "12 A"),
    ("12 Allée des Tilleuls", "Allée des Tilleuls", "12"),
    ("12 Terrasse des Feuillants", "Terrasse des Feuillants", "12"),
    ("12 ter Terrasse des Feuillants", "Terrasse des Feuillants", "12 ter"),
    ("12 Bisson Street", "Bisson Street", "12"),
    ("12 Quai de la Tournelle", "Quai de la Tournelle", "12"),
    ("12 Quatre Vents", "Quatre Vents", "12"),
    ("12bistro Rue X", "12bistro Rue X", None),
    ("12 B Grand'Rue", "Grand'Rue", "12 B"),
    ("12 A Grande Rue", "Grande Rue", "12 A"),
    ("4 c bd Voltaire", "bd Voltaire", "4 c"),
    ("4 C av. Jean Jaurès", "av. Jean Jaurès", "4 C"),
    ("3 B Via Roma", "Via Roma", "3 B"),
    ("3 B Piazza Navona", "Piazza Navona", "3 B"),
    # ... only before a French, Belgian or Italian street type, and never a compass point: in
    # English-speaking countries a lone letter after the number is a compass point or a
    # lettered street
    ("1130 N Delaware St", "N Delaware St", "1130"),
    ("81 A Lancaster Dr", "A Lancaster Dr", "81"),
    ("12 E Main Street", "E Main Street", "12"),
    ("12 w 45th Street", "w 45th Street", "12"),
    ("5 O Street", "O Street", "5"),
    ("100 C Street SE", "C Street SE", "100"),
    ("1500 A Ave NE", "A Ave NE", "1500"),
    ("1200 A Avenue", "A Avenue", "1200"),
    ("1234 W Avenue J", "W Avenue J", "1234"),
    ("5 S Grand Ave", "S Grand Ave", "5"),
    ("12 A Rue", "A Rue", "12"),
    ("12 E rue de la Gare", "E rue de la Gare", "12"),  # a compass point is never a suffix
    ("12e Arrondissement", "12e Arrondissement", None),
    # French, Belgian and Italian suffixes, number last
    ("Rue Victor Hugo 12 bis", "Rue Victor Hugo", "12 bis"),
    ("Rue Victor Hugo 12bis", "Rue Victor Hugo", "12bis"),
    ("Rue Victor Hugo 12 BIS", "Rue Victor Hugo", "12 BIS"),
    ("Rue Victor Hugo 12-bis", "Rue Victor Hugo", "12-bis"),
    ("Rue Victor Hugo, 12 ter", "Rue Victor Hugo", "12 ter"),
    ("Rue Victor Hugo 12 quater", "Rue Victor Hugo", "12 quater"),
    ("Rue Victor Hugo 12-quater", "Rue Victor Hugo", "12-quater"),
    ("Rue Victor Hugo 12 quinquies", "Rue Victor Hugo", "12 quinquies"),
    ("Rue Victor Hugo 12-Quinquies", "Rue Victor Hugo", "12-Quinquies"),
    ("Rue Victor Hugo 12 A", "Rue Victor Hugo", "12 A"),
    ("Rue Victor Hugo 12/A", "Rue Victor Hugo", "12/A"),
    ("Via Roma 10/B", "Via Roma", "10/B"),
    ("Via Roma, 10/b", "Via Roma", "10/b"),
    ("Via Roma 10 bis", "Via Roma", "10 bis"),
    ("Via Roma 10/bis", "Via Roma", "10/bis"),
    ("Kerkstraat 12A", "Kerkstraat", "12A"),
    ("Kerkstraat 12a", "Kerkstraat", "12a"),
    ("Kerkstraat 12-14", "Kerkstraat", "12-14"),
    ("Rue de la Loi 16 bis bte 3", "Rue de la Loi", "16 bis bte 3"),
    ("Via Roma 10 / B", "Via Roma", "10 / B"),
    ("Via Roma 10 - bis", "Via Roma", "10 - bis"),
    ("Keizersgracht 12 - Rue", "Keizersgracht 12 - Rue", None),
    # no number: `s/n` (sin número), `snc` (senza numero civico)
    ("Via Roma snc", "Via Roma snc", None),
    ("Via Roma, snc", "Via Roma, snc", None),
    ("Via Roma SNC", "Via Roma SNC", None),
    ("Calle Mayor s/n", "Calle Mayor s/n", None),
    ("Calle Mayor, S/N", "Calle Mayor, S/N", None),
    ("Località Piano snc", "Località Piano snc", None),
    # units
    ("306 / 39 London Circuit", "London Circuit", "306 / 39"),
    ("596 / 87 Fcebtf Lfgkqiz", "Fcebtf Lfgkqiz", "596 / 87"),
    ("Unit 5, 12 Smith St", "Unit 5, 12 Smith St", None),
    ("Flat 2, 10 Downing Street", "Flat 2, 10 Downing Street", None),
    ("Main Street Apt 5", "Main Street Apt 5", None),
    # a number in the street's name
    ("Straße des 17. Juni 114", "Straße des 17. Juni", "114"),
    ("Straße des 17. Juni", "Straße des 17. Juni", None),
    ("1e Jan van der Heijdenstraat 20", "1e Jan van der Heijdenstraat", "20"),
    ("2ª Travessa 5", "2ª Travessa", "5"),
    ("1st Street 5", "1st Street", "5"),
    ("4th Avenue", "4th Avenue", None),
    ("Fifth Avenue", "Fifth Avenue", None),
    ("3 Maja 12", "3 Maja", "12"),
    ("3 Maja", "3 Maja", None),
    ("18 Septemberplein 3", "18 Septemberplein", "3"),
    # no number
    ("Lansdown Glade", "Lansdown Glade", None),
    ("Postbus", "Postbus", None),
    ("123", "123", None),
    ("123 456", "123 456", None),
    # whitespace and commas
    ("  Keizersgracht   123 , ", "Keizersgracht", "123"),
    ("Avenida Paulista ,1578", "Avenida Paulista", "1578"),
    ("Lansdown Glade,", "Lansdown Glade", None),
    ("Keizersgracht\u00a0123", "Keizersgracht", "123"),
    ("", "", None),
    ("   ", "", None),
    (" , ", ",", None),
]


@pytest.mark.parametrize(("line", "street", "number"), SPLITS, ids=[repr(case[0]) for case in SPLITS])
def test_split_street(line: str, street: str, number: str | None) -> None:
    """A street line splits into the street and its house number by the shop's convention."""
    assert split_street(line) == (street, number)


#: What may stand between the street and the number: spaces and commas, and a number mark
#: (`Nr.`, `n.`, `nº`) that the split drops.
_BETWEEN = re.compile(r"[ ,]*(?:(?:(?:nr|no|n[º°])\.?|n\.) ?)?", re.IGNORECASE)


def _assert_only_cut(line: str, street: str, number: str | None) -> None:
    """The split only cuts the line in two: `street` and `number` are its two ends, in order,
    with nothing between them but separators, so no character moved from one to the other."""
    collapsed = " ".join(line.split())
    core = collapsed.strip(", ")
    if number is None:
        assert street == (core or collapsed)
        return
    assert number
    assert street
    assert len(street) + len(number) <= len(core)
    first = core.startswith(number) and core.endswith(street)
    last = core.startswith(street) and core.endswith(number)
    assert (first and _BETWEEN.fullmatch(core[len(number) : len(core) - len(street)]) is not None) or (
        last and _BETWEEN.fullmatch(core[len(street) : len(core) - len(number)]) is not None
    )


@given(st.text())
def test_split_street_any_text(line: str) -> None:
    """Any text splits without raising, keeps a street when not blank, and only cuts the line apart."""
    street, number = split_street(line)
    _assert_only_cut(line, street, number)


#: Street words. Some start like a suffix or a letter that may follow a number (`Allée`,
#: `Avenue`, `Terrasse`, `Bisson`, `Quatre`, `Quinconce`), to catch a split that takes the start
#: of a word; none is a suffix itself or a single letter (`12 A Rue` is a suffix, by design).
STREET_WORDS = [
    "Keizersgracht",
    "Baker",
    "Street",
    "Rue",
    "rue",
    "RUE",
    "de",
    "la",
    "Paix",
    "Hauptstraße",
    "Górna",
    "Avenida",
    "van",
    "Église",
    "Victor",
    "Hugo",
    "Allée",
    "Avenue",
    "avenue",
    "Terrasse",
    "Bisson",
    "bissectrice",
    "Quatre",
    "Quinconce",
    "Termini",
    "Via",
    "Roma",
    "Bd",
    "Ave",
    "Sainte-Anne",
    "d'Ivry",
]
WORDS = st.sampled_from(STREET_WORDS)
STREETS = st.lists(WORDS, min_size=1, max_size=4).map(" ".join)
NUMBERS = st.builds(
    lambda number, suffix: f"{number}{suffix}", st.integers(1, 99999), st.sampled_from(["", "a", "B", "bis", "-2"])
)
#: `bis`, `ter`, `quater`, `quinquies` in the cases people write them.
REPEATS = st.sampled_from(["bis", "ter", "quater", "quinquies"]).flatmap(
    lambda word: st.sampled_from([word, word.upper(), word.capitalize()])
)
#: Everything that may follow the digits of a house number, as the shop wrote it: nothing, a
#: glued letter (not `e`: `12e` is an ordinal), a repetition suffix glued, after a space or a
#: hyphen, a letter after a space (not a compass point: `12 N Main St`), a slash or a hyphen,
#: or a second number (a range).
SUFFIXES = st.one_of(
    st.just(""),
    st.sampled_from("abcdfghABCDFGHé"),
    st.builds(lambda sep, word: sep + word, st.sampled_from(["", " ", "-"]), REPEATS),
    st.builds(lambda sep, letter: sep + letter, st.sampled_from([" ", "/", "-"]), st.sampled_from("abcdABCDFGHKé")),
    st.builds(lambda end: f"-{end}", st.integers(1, 999)),
)


@given(STREETS, NUMBERS)
def test_split_street_number_last(street: str, number: str) -> None:
    """`<street> <number>` gives the street and the number back."""
    assert split_street(f"{street} {number}") == (street, number)


@given(STREETS, st.integers(1, 99999), st.sampled_from(["", "a", "B", "-2", " / 4"]))
def test_split_street_number_first(street: str, number: int, suffix: str) -> None:
    """`<number> <street>` gives the street and the number back."""
    assert split_street(f"{number}{suffix} {street}") == (street, f"{number}{suffix}")


#: Words that start a French, Belgian or Italian street's name: a lone letter before one of them
#: is the number's (`12 A Rue X`), before any other word the street's (`1130 N Delaware St`).
STREET_TYPES = ["Rue", "rue", "RUE", "Allée", "Avenue", "avenue", "Bd", "Chemin", "Quai", "Via", "Piazza", "Grande"]
FIRST_STREETS = st.one_of(
    STREETS, st.builds(lambda kind, name: f"{kind} {name}", st.sampled_from(STREET_TYPES), STREETS)
)


@given(FIRST_STREETS, st.integers(1, 9999), SUFFIXES, st.sampled_from([" ", ", "]))
def test_split_street_number_first_suffix(street: str, number: int, suffix: str, separator: str) -> None:
    """`<number><suffix>[,] <street>`: the suffix stays with the number, the street stays whole."""
    lone_letter = len(suffix) == 2 and suffix[0] == " "
    assume(not lone_letter or (street.split()[0] in STREET_TYPES and " " in street))
    assert split_street(f"{number}{suffix}{separator}{street}") == (street, f"{number}{suffix}")


@given(STREETS, st.integers(1, 9999), SUFFIXES, st.sampled_from([" ", ", "]))
def test_split_street_number_last_suffix(street: str, number: int, suffix: str, separator: str) -> None:
    """`<street>[,] <number><suffix>`: the suffix stays with the number, the street stays whole."""
    assert split_street(f"{street}{separator}{number}{suffix}") == (street, f"{number}{suffix}")


#: Tokens of a line: street words, numbers, suffixes, letters, "no number" marks and commas, in
#: any order.
TOKENS = st.one_of(
    WORDS,
    st.integers(0, 999).map(str),
    REPEATS,
    st.sampled_from(["A", "b", "N", "s/n", "snc", "SNC", "bus", "nr.", ",", "-", "/", "12bis", "10/B", "12-14"]),
)


@given(st.lists(TOKENS, max_size=7).map(" ".join))
def test_split_street_token_soup(line: str) -> None:
    """Whatever the order of the tokens: the line is only cut in two, and no street word ever
    ends up in the house number."""
    street, number = split_street(line)
    _assert_only_cut(line, street, number)
    if number is not None:
        assert not set(re.split(r"[ ,/-]+", number)) & set(STREET_WORDS)


# ---------------------------------------------------------------- house_number_from_meta


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"_shipping_house_number": "12"}, "12"),
        ({"shipping_house_number": " 12 "}, "12"),
        ({"_shipping_house_number": 12}, "12"),
        ({"_shipping_house_number": "12", "_shipping_house_number_suffix": "a"}, "12a"),
        ({"_shipping_house_number": "12", "_shipping_house_number_suffix": "A"}, "12A"),
        ({"_shipping_house_number": "12", "_shipping_house_number_suffix": "bis"}, "12 bis"),
        ({"_shipping_house_number": "12", "_shipping_house_number_suffix": "-1"}, "12-1"),
        ({"_shipping_house_number": "12", "_shipping_house_number_suffix": 3}, "12 3"),
        ({"_shipping_house_number": "12", "shipping_house_number_suffix": "III"}, "12 III"),
        ({"_shipping_house_number": "12", "_shipping_house_number_addition": "hs"}, "12 hs"),
        ({"_shipping_house_number": 7, "shipping_house_number_addition": "b"}, "7b"),
        ({"_shipping_house_number": "12", "_shipping_house_number_suffix": "  "}, "12"),
        ({"_shipping_house_number": "12", "_shipping_house_number_suffix": None}, "12"),
        ({"_shipping_house_number": " ", "shipping_house_number": "14"}, "14"),
        ({"_shipping_house_number": "12", "shipping_house_number": "14"}, "12"),
        ({"_shipping_house_number_suffix": "a"}, None),
        ({"_shipping_house_number": ""}, None),
        ({"_shipping_house_number": None}, None),
        ({"_shipping_house_number": True}, None),
        ({"_shipping_house_number": 12.0}, None),
        ({"_shipping_house_number": ["12"]}, None),
        ({"_billing_house_number": "12"}, None),
        ({}, None),
    ],
)
def test_house_number_from_meta(meta: dict[str, object], expected: str | None) -> None:
    """The shipping house number and its suffix come from the plugin's meta keys."""
    assert house_number_from_meta(meta, "shipping") == expected


def test_house_number_from_meta_billing() -> None:
    """`kind` picks the billing keys, not the shipping ones."""
    meta = {"_shipping_house_number": "1", "_billing_house_number": "2", "_billing_house_number_suffix": "c"}
    assert house_number_from_meta(meta, "billing") == "2c"


# ---------------------------------------------------------------- codes


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("IT-RM", "RM"),
        ("it-rm", "RM"),
        ("US-CA", "CA"),
        (" ca ", "CA"),
        ("ACT", "ACT"),
        ("NSW", "NSW"),
        ("GB-ENG", "ENG"),
        ("IT-", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_subdivision(code: str | None, expected: str | None) -> None:
    """A state code is upper-cased and loses its ISO 3166-2 country prefix; blank is None."""
    assert subdivision(code) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("NL", "NL"),
        ("nl", "NL"),
        (" de ", "DE"),
        ("NLD", None),
        ("N", None),
        ("N1", None),
        ("ß", None),
        ("\ufb00", None),  # the "ff" ligature upper-cases to "FF"
        ("ÄB", None),
        ("", None),
        (None, None),
    ],
)
def test_country(code: str | None, expected: str | None) -> None:
    """A country code is two ASCII letters, upper-cased; anything else is None."""
    assert country(code) == expected


# ---------------------------------------------------------------- build_address

FIELDS = {
    "name": "Anna de Vries",
    "company": None,
    "street": "Keizersgracht 123",
    "line2": None,
    "postal_code": "1015 CJ",
    "city": "Amsterdam",
    "state": None,
    "country_code": "nl",
    "phone": None,
    "email": None,
}


def _valid(address: Address | None) -> Address:
    assert address is not None
    return msgspec.json.decode(msgspec.json.encode(address), type=Address)


def test_build_address_splits_street() -> None:
    """A usable address has the street split and the country upper-cased, optional fields unset."""
    address = build_address(**FIELDS)
    assert address == Address(
        name="Anna de Vries",
        address_line_1="Keizersgracht",
        house_number="123",
        postal_code="1015 CJ",
        city="Amsterdam",
        country_code="NL",
    )
    assert _valid(address) == address


def test_build_address_all_fields() -> None:
    """Every field is trimmed and set; the state loses its country prefix."""
    address = build_address(
        name=" Mario Rossi ",
        company=" Rossi S.r.l. ",
        street=" Via del Corso, 12 ",
        line2=" Scala B ",
        postal_code=" 00186 ",
        city=" Roma ",
        state="IT-RM",
        country_code=" it ",
        phone=" +39 06 1234567 ",
        email=" mario@example.com ",
    )
    assert address == Address(
        name="Mario Rossi",
        company_name="Rossi S.r.l.",
        address_line_1="Via del Corso",
        house_number="12",
        address_line_2="Scala B",
        postal_code="00186",
        city="Roma",
        state_province_code="RM",
        country_code="IT",
        phone_number="+39 06 1234567",
        email="mario@example.com",
    )
    assert _valid(address) == address


def test_build_address_house_number_wins() -> None:
    """A separate house number is used as given and the street is kept whole."""
    address = build_address(**{**FIELDS, "street": "  Straße des 17. Juni 114 "}, house_number=" 5a ")
    assert address is not None
    assert (address.address_line_1, address.house_number) == ("Straße des 17. Juni 114", "5a")


def test_build_address_blank_house_number_splits() -> None:
    """A blank separate house number is missing, so the street is split."""
    address = build_address(**FIELDS, house_number="  ")
    assert address is not None
    assert (address.address_line_1, address.house_number) == ("Keizersgracht", "123")


def test_build_address_street_without_number() -> None:
    """A street without a number is kept whole and the house number left unset."""
    address = build_address(**{**FIELDS, "street": "Lansdown Glade"})
    assert address is not None
    assert (address.address_line_1, address.house_number) == ("Lansdown Glade", None)


def test_build_address_company_fallback() -> None:
    """Without a name the company is the name, and it stays the company too."""
    address = build_address(**{**FIELDS, "name": "  ", "company": "Acme B.V."})
    assert address is not None
    assert (address.name, address.company_name) == ("Acme B.V.", "Acme B.V.")


def test_build_address_blank_optionals_are_none() -> None:
    """Blank optional fields are left unset, not sent as empty strings."""
    address = build_address(**{**FIELDS, "company": " ", "line2": "", "state": "  ", "phone": " ", "email": ""})
    assert address is not None
    assert (address.company_name, address.address_line_2, address.state_province_code) == (None, None, None)
    assert (address.phone_number, address.email) == (None, None)
    assert b'""' not in msgspec.json.encode(address)


@pytest.mark.parametrize(
    "missing",
    [
        {"name": None},
        {"name": "  "},
        {"street": None},
        {"street": " "},
        {"postal_code": ""},
        {"city": None},
        {"country_code": None},
        {"country_code": "NLD"},
        {"country_code": "  "},
    ],
    ids=lambda missing: ",".join(f"{key}={value!r}" for key, value in missing.items()),
)
def test_build_address_unusable(missing: dict[str, str | None]) -> None:
    """Without a name, street, postal code, city or valid country there is no usable address."""
    assert build_address(**{**FIELDS, **missing}) is None


def test_build_address_unusable_even_with_house_number() -> None:
    """A separate house number does not make up for a missing street."""
    assert build_address(**{**FIELDS, "street": None}, house_number="12") is None
