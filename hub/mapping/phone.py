"""Phone numbers in E.164, the form the mappings match contacts on.

``phonenumbers`` (Google's libphonenumber) decides, but a full parse costs ~30 µs, the costliest
value conversion of a sync. Most numbers small businesses hold are national numbers written with
digits and spaces, dots or dashes (``06 12 34 56 78``); for those, and only in regions whose
metadata makes the answer plain (a literal national prefix, no transform rule, the main region of
its calling code), :func:`_national` reaches the same E.164 string from the same metadata in
~2 µs. Anything else goes to ``phonenumbers``. A test compares both on every region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata

_SEPARATORS = str.maketrans("", "", " .-")


def to_e164(text: str, region: str | None) -> str | None:
    """``text`` in E.164 (``+33612345678``), a national number read as ``region``'s; None when it is
    not a possible phone number."""
    return _national(text, region) or _parsed(text, region)


def _parsed(text: str, region: str | None) -> str | None:
    """The full parse, by ``phonenumbers``."""
    try:
        parsed = phonenumbers.parse(text, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class _Plain:
    """What a national number of a region needs to become E.164, when the region's rules are plain."""

    country_code: str
    prefix: str
    international: re.Pattern[str] | None
    pattern: re.Pattern[str]
    lengths: frozenset[int]


_REGIONS: dict[str, _Plain | None] = {}


def _plain(region: str) -> _Plain | None:
    """The region's rules when a national number's E.164 form follows from them alone, else None."""
    if region in _REGIONS:
        return _REGIONS[region]
    meta = PhoneMetadata.metadata_for_region(region, None)
    plain = None
    if meta is not None and meta.country_code is not None:
        cc, prefix, desc = meta.country_code, meta.national_prefix, meta.general_desc
        if (
            prefix
            and prefix.isdigit()
            and meta.national_prefix_for_parsing == prefix  # stripped as a literal, not a pattern
            and not meta.national_prefix_transform_rule
            and phonenumbers.region_code_for_country_code(cc) == region  # its lengths decide possibility
            and not str(cc).startswith(prefix[0])  # a leading country code is never mistaken for it
            and desc is not None
            and desc.national_number_pattern
            and desc.possible_length  # a length outside it (even a local-only one) takes the full parse
        ):
            idd = meta.international_prefix
            plain = _Plain(
                country_code=str(cc),
                prefix=prefix,
                international=re.compile(idd) if idd else None,
                pattern=re.compile(desc.national_number_pattern),
                lengths=frozenset(desc.possible_length),
            )
    _REGIONS[region] = plain
    return plain


def _national(text: str, region: str | None) -> str | None:
    """E.164 of a plainly written national number (digits and `` .-``, national prefix first), or
    None when ``phonenumbers`` must decide."""
    if not region or len(text) > 40:
        return None
    digits = text.translate(_SEPARATORS)
    if not digits.isascii() or not digits.isdigit():
        return None
    plain = _plain(region.upper())
    if plain is None or not digits.startswith(plain.prefix):
        return None
    if plain.international is not None and plain.international.match(digits):
        return None  # dialled abroad (``00 33 …``): phonenumbers reads the country code
    national = digits[len(plain.prefix) :]
    if national[:1] in ("", "0") or len(national) not in plain.lengths or not plain.pattern.fullmatch(national):
        return None
    return "+" + plain.country_code + national
