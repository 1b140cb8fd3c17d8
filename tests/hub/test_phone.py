"""The E.164 shortcut for plain national numbers agrees with phonenumbers' full parse, region by region."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from hub.mapping import phone
from hub.mapping.values import ValueProblem, clear_phone_cache, phone_e164

TYPES = [
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.UAN,
]


def _inputs(region: str, rng: random.Random) -> list[str]:
    """National spellings of the region's example numbers and of their neighbours (other last digits,
    longer, shorter, an extra 0, dialled abroad), and random digit runs after the national prefix."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = (meta.national_prefix or "") if meta else ""
    out = []
    for kind in TYPES:
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
        digits = prefix + str(example.national_number)
        out += [national, national.replace(" ", "."), national.replace(" ", "-"), digits, digits[len(prefix) :]]
        out += [prefix + "0" + digits[len(prefix) :], "00" + digits[len(prefix) :]]
        for _ in range(30):
            tail = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 6)))
            out.append(digits[: -rng.randint(1, 5)] + tail)
    for _ in range(100):
        digits = prefix + "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 15)))
        out += [digits, " ".join(digits[i : i + 2] for i in range(0, len(digits), 2))]
    return out


def test_the_shortcut_agrees_with_phonenumbers_in_every_region() -> None:
    rng = random.Random(20261121)
    shortcuts = 0
    regions_with_shortcut = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for text in _inputs(region, rng):
            fast = phone._national(text, region)
            if fast is None:
                continue
            shortcuts += 1
            regions_with_shortcut.add(region)
            assert fast == phone._parsed(text, region), (region, text)
    # The comparison means something only if the shortcut is taken often, in the regions that matter here.
    assert shortcuts > 2500
    assert {"FR", "DE", "BE", "CH", "NL", "AT"} <= regions_with_shortcut


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("06.12.34.56.78", "fr", "+33612345678"),
        ("0612345678", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "FR", "+33612345678"),  # international form: the full parse
        ("00 33 6 12 34 56 78", "FR", "+33612345678"),  # dialled from abroad: the full parse
        ("33612345678", "FR", "+33612345678"),  # country code without a plus: the full parse
        ("020 7946 0018", "GB", "+442079460018"),
        ("(650) 253-0000", "US", "+16502530000"),
    ],
)
def test_known_numbers(text: str, region: str, expected: str) -> None:
    clear_phone_cache()
    assert phone_e164(text, region) == expected


@pytest.mark.parametrize("text", ["06 12", "not a phone", "06 12 34 56 78 90 12 34 56 78"])
def test_impossible_numbers_are_refused_with_their_value(text: str) -> None:
    clear_phone_cache()
    with pytest.raises(ValueProblem, match="expected a phone number"):
        phone_e164(text, "FR")


def test_regions_with_rules_beyond_a_literal_prefix_take_the_full_parse() -> None:
    # Argentina rewrites its national prefix with a transform rule; Guernsey shares +44 with GB; GB's
    # prefix is a pattern (0 or 180020).
    assert phone._plain("AR") is None
    assert phone._plain("GG") is None
    assert phone._plain("GB") is None
    assert phone._plain("FR") is not None
