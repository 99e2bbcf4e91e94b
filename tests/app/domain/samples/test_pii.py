"""The personal-data scan: counts per kind, checksums, and no values in messages."""

from __future__ import annotations

import pytest

from app.domain.samples.pii import iban_valid, luhn_valid, pii_warning, scan_examples, scan_text
from app.domain.samples.schemas import Example


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card is 4111 1111 1111 1111, please", {"card": 1}),
        ("my card is 4111-1111-1111-1111", {"card": 1}),
        ("my card is 4111 1111 1111 1112", {}),  # fails Luhn: not a card, and not a phone
        ("order 1234567890123456789012 shipped", {}),  # longer than any card number
        ("pay to GB82 WEST 1234 5698 7654 32 Thanks", {"iban": 1}),
        ("pay to DE89370400440532013000", {"iban": 1}),
        ("code DE89370400440532013001", {}),  # wrong check digits
        ("kit RV0717B01008001 from Seegene", {}),  # passes mod 97, but RV is no country
        ("mail ada.lovelace+ml@example.co.uk today", {"email": 1}),
        ("call +44 20 7946 0958 or (555) 123-4567 or 555-123-4567", {"phone": 3}),
        ("on 2020-01-02 12:30 I paid 123456789 for 1,000,000 points", {}),
        ("doi 10.1186/1471-2172-10-64 and fimmu.2015.00755", {}),
    ],
)
def test_scan_text(text: str, expected: dict[str, int]) -> None:
    assert dict(scan_text(text)) == expected


def test_iban_checksum() -> None:
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")


def test_scan_examples_covers_every_field_and_reads_a_shared_context_once() -> None:
    context = "Contact: desk@example.org"
    examples = [
        Example(input="card 4111111111111111", target="ok", instruction="", context=context),
        Example(input="hi", target="reach me at +1 415 555 2671", context=context),
        Example(input="hi", target="x", instruction="IBAN DE89370400440532013000"),
    ]
    assert dict(scan_examples(examples)) == {"card": 1, "email": 1, "phone": 1, "iban": 1}


def test_warning_gives_counts_not_values() -> None:
    counts = scan_text("a@b.io c@d.io 4111111111111111")
    warning = pii_warning(counts)
    assert warning == (
        "possible personal data: 2 email addresses, 1 payment card number (values not shown); "
        "remove or mask it before sharing the data with a model provider"
    )
    assert pii_warning(scan_text("nothing here")) is None
