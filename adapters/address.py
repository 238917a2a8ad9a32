"""Addresses as Sendcloud wants them: street and house number apart, clean state and country codes.

Shops send one free street line (Shopify `address1`, WooCommerce `address_1`); Sendcloud has
`address_line_1` and a separate `house_number`, which the carriers of the Benelux and Germany
need. `split_street` splits the line where it can tell the number apart and otherwise leaves it
whole: a line that is not split loses nothing, Sendcloud can still parse it itself, while a
wrong split puts part of the street in the house number.

Some WooCommerce address plugins (PostNL, MyParcel) ask the customer for the number in a field
of its own and keep it in the order's `meta_data`: `house_number_from_meta` reads it, and
`build_address` then uses the street line whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from adapters.sendcloud import Address
from adapters.units import text

__all__ = ["build_address", "country", "house_number_from_meta", "split_street", "subdivision"]

# ---------------------------------------------------------------- house number grammar
#
# Patterns run on a line whose whitespace is already collapsed to single spaces.

#: One Unicode letter (a word character that is neither a digit nor `_`).
_LETTER = r"[^\W\d_]"

#: A hyphen, an en dash or a slash between two numbers.
_DASH = r"[-\u2013/]"

#: The number itself, with letters glued to it: `5`, `52A`, `7bis`.
_NUMBER = rf"\d+{_LETTER}*"

#: The Latin repetition suffixes of French, Belgian and Italian numbers (`12 bis` is the second
#: house numbered 12, `12 ter` the third ...), in any case.
_REPEAT = r"(?:bis|ter|quater|quinquies)"

#: A second number, a repetition suffix or a letter after a hyphen, dash or slash: `12-14`,
#: `12 - 14`, `3/1`, `1-A`, `10/B`, `10 / B`, `12-hs`, `12-quater`. Up to three letters only
#: when glued to the dash: in `Keizersgracht 12 - Rue ...` the word after the spaced dash is not
#: the number's.
_RANGE = rf"(?:{_DASH}{_LETTER}{{1,3}}| ?{_DASH} ?(?:{_NUMBER}|{_REPEAT}|hs|bg|{_LETTER}))"

#: An addition after a space: one letter (`5 a`, `1 A`), a repetition suffix (`7 bis`,
#: `7 quinquies`), Dutch `hs`/`bg` (ground floor), a Roman floor number (`123 III`).
_ADDITION = rf"(?: (?:{_LETTER}|{_REPEAT}|hs|bg|II|III|IV))"

#: A Belgian box number: `12 bus 3`, `12 bte 3`, `12 boîte 3`, `12 box 3`, `12 b. 3`.
_BOX = rf"(?: (?:bus|bte|bt|boîte|boite|box|b)\.? ?{_NUMBER})"

#: A Spanish or Portuguese floor and door after the number: `23, 2º`, `5, 3º B`, `7 1ª izq.`.
_FLOOR = rf"(?:,? \d+[ºª°]\.?(?: ?{_LETTER}{{1,5}}\.?)?)"

#: A whole house number written after the street.
_HOUSE_NUMBER = rf"{_NUMBER}{_RANGE}?{_ADDITION}?{_BOX}?{_FLOOR}?"

#: A word that may stand between the street and its number, and is dropped: `Nr. 5`, `n. 5`, `nº 5`.
_NUMBER_MARK = r"(?:(?:nr|no|n[º°])\.?|n\.) ?"

#: `<street>[,] [nr.] <number>`. The street is the shortest prefix that leaves a whole house
#: number at the end, so `Rue Neuve 12 bus 3` keeps `12 bus 3` together, and a number inside
#: the name (`Straße des 17. Juni 114`) stays in the street.
_NUMBER_LAST = re.compile(
    rf"(?P<street>.+?)(?:, ?| )(?:{_NUMBER_MARK})?(?P<number>{_HOUSE_NUMBER})",
    re.IGNORECASE,
)


def _spellings(words: str) -> frozenset[str]:
    """The words as shops write them: lower, Capitalised, Title and UPPER case, with and without
    a final dot, so a look-up needs no per-call `lower()`."""
    return frozenset(
        form + dot
        for word in words.split()
        for form in (word, word.capitalize(), word.title(), word.upper())
        for dot in ("", ".")
    )


#: Words that start a French, Belgian or Italian street's name: `rue`, `allée`, `avenue`,
#: `chemin`, `quai`, `via`, `piazza`, `corso` ... and their abbreviations.
_STREET_TYPES = _spellings(
    "rue ruelle allée allee avenue chemin impasse quai cours chaussée chaussee drève dreve"
    " rond-point résidence residence lieu-dit sentier hameau lotissement traverse montée montee"
    " parvis cité cite clos domaine faubourg fbg voie venelle boulevard place route square"
    " passage promenade esplanade grand grande bd av ch imp pl rte sq via viale piazza piazzale"
    " corso vicolo largo strada contrada località localita frazione calle avenida rua carrer"
)

#: Compass points, which start a street's name in the US (`1130 N Delaware St`, `W Avenue J`):
#: never a suffix of the number.
_COMPASS = frozenset("NSEWOnsewo")


def _lone_letter(street: str) -> int:
    """Where the street starts when its first token is a lone letter that belongs to the number
    in front of it (`A Rue X` of `12 A Rue X` → 2, `A, rue X` → 3), else 0.

    Only before the street type that starts a French, Belgian or Italian street's name, with a
    name after it, and never a compass point: in the US, Canada or the UK a lone letter after
    the number is a compass point or a lettered street (`1130 N Delaware St`,
    `100 C Street SE`, `1200 A Avenue`, `1234 W Avenue J`), and stays in the street. Run only on
    a street whose second character is a space or comma and whose first is no compass point, so
    the common line pays for one or two comparisons.
    """
    start = 2 if street[1] == " " else 3
    if street[start - 1 : start] != " " or not street[0].isalpha():
        return 0
    end = street.find(" ", start)
    kind = street[start:end] if end > 0 else street[start:]
    if "'" in kind or "\u2019" in kind:  # `Grand'Rue`: the name is glued to the type
        kind = kind.replace("\u2019", "'").partition("'")[0]
    elif end < 0:  # the type alone, no name after it: `1200 A Avenue`
        return 0
    return start if kind in _STREET_TYPES else 0


#: `<number>[,] <street>`: `10 Rue de Rivoli`, `221B Baker Street`, `12-14 Main St`,
#: `306 / 39 London Circuit` (Australian unit / street number), and the suffixes of French,
#: Belgian and Italian numbers: `12bis`, `12 BIS`, `12-bis`, `12 quater`, `12/A`, `10/B`,
#: `12 A Rue X` (see `_lone_letter`). Not an ordinal that starts a street's name:
#: `1e Jan van der Heijdenstraat`, `2ª Travessa` (`4th`, `1st`, `2nd` never match, as at most
#: one letter, or a whole repetition suffix, may follow the digits). A suffix is only taken
#: when a space or comma follows it, so it never takes the start of a street word
#: (`12 Terrasse X`, `12 Allée X`).
_NUMBER_FIRST = re.compile(
    rf"(?!\d+[eºª]\b)(?P<number>\d+(?:(?=[bBtTqQ]){_REPEAT}|{_LETTER}?(?: ?{_DASH} ?\d+{_LETTER}?)?)"
    rf"(?:{_DASH}(?:{_REPEAT}|{_LETTER})| (?=[bBtTqQ]){_REPEAT})?),? (?P<street>.*{_LETTER}.*)",
    re.IGNORECASE,
)

_MONTHS = (
    # Polish, in the genitive of street names: `3 Maja`, `11 Listopada`.
    "stycznia|lutego|marca|kwietnia|maja|czerwca|lipca|sierpnia|września|wrzesnia"
    "|października|pazdziernika|listopada|grudnia"
    # Dutch, alone or in a compound: `18 Septemberplein`.
    "|januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november|december"
)

#: A street named after a date (`3 Maja`, `18 Septemberplein`): its leading number is part
#: of the name, and only a number at the end can be the house number.
_DATE_NAME = re.compile(
    rf"\d+\.? (?:{_MONTHS})(?:plein|laan|straat|weg|park|singel|kade|hof|dreef)?(?!\w)",
    re.IGNORECASE,
)

#: A street part that ends in a unit word: the number after it is a unit, not a house number
#: (`Main Street Apt 5`), so the line is not split.
_UNIT_AT_END = re.compile(
    r"(?:^|[ ,])(?:apt|apartment|suite|ste|unit|flat|fl|floor|room|rm|bldg|building|#)\.?$",
    re.IGNORECASE,
)

_HAS_LETTER = re.compile(_LETTER)
_SEPARATORS = ", "
#: What follows a lone letter at the start of a street: `A Rue X`, `A, rue X`.
_LONE_LETTER_ENDS = (" ", ",")


def split_street(line: str) -> tuple[str, str | None]:
    """Split a street line into `(street, house_number)`; the number is None when none is found.

    Whitespace is trimmed and collapsed, and commas and spaces around the street are removed.
    The conventions, tried in this order:

    - number first, as in France, the UK and the US: `10 Rue de Rivoli`, `221B Baker Street`,
      `306 / 39 London Circuit` → (`Rue de Rivoli`, `10`) ..., with the suffixes French,
      Belgian and Italian numbers carry: `12 bis Rue Victor Hugo` → (`Rue Victor Hugo`,
      `12 bis`), likewise `12bis`, `12-BIS`, `12 ter`, `12 quater`, `12 quinquies`, `12a`,
      `12/A`, `10/B` and a standalone letter before a French, Belgian or Italian street type
      (`12 A Rue X`, `12 B avenue Foch`; but `12 Allée X` → `12`, and never a compass point:
      `1130 N Delaware St` → `1130`). The
      leading number must not be an ordinal that belongs to the name
      (`1e Jan van der Heijdenstraat 20`, `4th Avenue`) nor the day of a date-named street
      (`3 Maja 12`, `18 Septemberplein 3`).
    - number last, as in most of Europe and Latin America: `Keizersgracht 123`,
      `Avenida Paulista, 1578`, `Via Roma n. 5`, with what may follow the number: a glued
      suffix (`52A`, `7bis`), a range (`12-14`, `12 - 14`, `Str. 3/1`, `1-A`, `10/B`,
      `12-quater`), an addition after a space (`5 a`, `7 bis`, `123 III`), a Belgian box
      (`12 bus 3`) or a Spanish floor (`C/ Alcalá 23, 2º`). The street keeps numbers of its
      own name (`Straße des 17. Juni 114`).
    - otherwise the line is kept whole: `Lansdown Glade`, `Fifth Avenue`, `Postbus`, a line
      with only numbers (`123`), one whose last number belongs to a unit word
      (`Main Street Apt 5`), one with a unit before the number (`Flat 2, 10 Downing Street`),
      or one that says it has no number (`Via Roma snc`, `Calle Mayor s/n`).

    The number is returned as the shop wrote it, whitespace collapsed: `12bis`, `12 BIS` and
    `12-bis` are not normalised (Sendcloud's `house_number` is free text with no length limit).

    The street always has a letter when a number is returned, both parts are substrings of the
    collapsed line, and a non-blank line never gives an empty street. Never raises.
    """
    collapsed = " ".join(line.split())
    core = collapsed.strip(_SEPARATORS)
    if not core:
        return collapsed, None
    if not _DATE_NAME.match(core):
        first = _NUMBER_FIRST.fullmatch(core)
        if first is not None:
            street = first.group("street")
            if street[1:2] in _LONE_LETTER_ENDS and street[0] not in _COMPASS:
                cut = _lone_letter(street)  # `12 A Rue X`: the `A` is the number's
                if cut and first.start("street") == first.end("number") + 1:
                    return street[cut:].strip(_SEPARATORS), core[: first.end("number") + 2]
            return street.strip(_SEPARATORS), first.group("number")
    last = _NUMBER_LAST.fullmatch(core)
    if last is not None:
        street = last.group("street").strip(_SEPARATORS)
        if _HAS_LETTER.search(street) and not _UNIT_AT_END.search(street):
            return street, last.group("number")
    return core, None


# ---------------------------------------------------------------- WooCommerce meta


def _meta_text(value: object) -> str | None:
    """A meta value as text: strings stripped, integers written out, anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return text(value)
    return None


def _first_meta(meta: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = _meta_text(meta.get(key))
        if value is not None:
            return value
    return None


def house_number_from_meta(meta: Mapping[str, object], kind: str) -> str | None:
    """The house number a WooCommerce address plugin stored in the order's meta, or None.

    `meta` maps meta keys to values (WooCommerce's `meta_data` list as a dict); `kind` is
    `"shipping"` or `"billing"`. The number is read from `_{kind}_house_number`, then
    `{kind}_house_number`; a suffix from `_{kind}_house_number_suffix`,
    `{kind}_house_number_suffix`, `_{kind}_house_number_addition`, then
    `{kind}_house_number_addition`. Strings are stripped, integers written out, blanks and
    other types ignored.

    The suffix is glued to the number when it is a single letter or starts with a hyphen or
    slash (`12` + `a` → `12a`, `12` + `-1` → `12-1`) and otherwise joined with a space (`12` +
    `bis` → `12 bis`, `12` + `III` → `12 III`). A suffix without a number gives None.
    """
    number = _first_meta(meta, (f"_{kind}_house_number", f"{kind}_house_number"))
    if number is None:
        return None
    suffix = _first_meta(
        meta,
        (
            f"_{kind}_house_number_suffix",
            f"{kind}_house_number_suffix",
            f"_{kind}_house_number_addition",
            f"{kind}_house_number_addition",
        ),
    )
    if suffix is None:
        return number
    if (len(suffix) == 1 and suffix.isalpha()) or suffix[0] in "-/":
        return number + suffix
    return f"{number} {suffix}"


# ---------------------------------------------------------------- codes

_ISO_PREFIX = re.compile(r"[A-Za-z]{2} ?- ?")


def subdivision(code: str | None) -> str | None:
    """A state or province code for Sendcloud: stripped, upper-cased, without an ISO 3166-2
    country prefix (`IT-RM` → `RM`, `ca` → `CA`, `ACT` → `ACT`); None when blank."""
    value = text(code)
    if value is None:
        return None
    if "-" in value:  # the common case, a bare code (`CA`, `ACT`), needs no regex
        prefix = _ISO_PREFIX.match(value)
        if prefix is not None:
            value = value[prefix.end() :]
    return text(value.upper())


def country(code: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 country code, stripped and upper-cased; None unless exactly two
    ASCII letters (checked before upper-casing: `"ß".upper()` is `"SS"`)."""
    value = text(code)
    if value is None or len(value) != 2 or not (value.isascii() and value.isalpha()):
        return None
    return value.upper()


# ---------------------------------------------------------------- address


def build_address(
    *,
    name: str | None,
    company: str | None,
    street: str | None,
    line2: str | None,
    postal_code: str | None,
    city: str | None,
    state: str | None,
    country_code: str | None,
    phone: str | None,
    email: str | None,
    house_number: str | None = None,
) -> Address | None:
    """A Sendcloud address from a shop's fields, or None when it has no usable address.

    Blank strings count as missing. The name falls back to the company. A separate
    `house_number` (from the shop) wins and the street is used whole, only trimmed; otherwise
    the street is split with `split_street`. None when any field the spec requires is missing:
    name, street, postal code, city or a two-letter country code.
    """
    company_name = text(company)
    full_name = text(name) or company_name
    line = text(street)
    number = text(house_number)
    if line is not None and number is None:
        line, number = split_street(line)
    postal = text(postal_code)
    town = text(city)
    country_code = country(country_code)
    if full_name is None or line is None or postal is None or town is None or country_code is None:
        return None
    return Address(
        name=full_name,
        address_line_1=line,
        postal_code=postal,
        city=town,
        country_code=country_code,
        company_name=company_name,
        house_number=number,
        address_line_2=text(line2),
        state_province_code=subdivision(state),
        email=text(email),
        phone_number=text(phone),
    )
