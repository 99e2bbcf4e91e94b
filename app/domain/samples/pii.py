"""A conservative scan for personal data in a sample: counts per kind, never the values.

Kinds: email addresses, phone numbers, payment card numbers (Luhn-valid only) and IBANs
(ISO 13616 mod-97 valid only). Checksums keep order numbers and ids from being reported as
cards or accounts. Matches are masked before the phone pattern runs, so a card number is
never counted again as a phone number. This is a prompt to look, not a guarantee: names
and addresses are not detected.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from app.domain.samples.schemas import Example

KIND_NAMES: dict[str, tuple[str, str]] = {  # kind: (singular, plural)
    "email": ("email address", "email addresses"),
    "phone": ("phone number", "phone numbers"),
    "card": ("payment card number", "payment card numbers"),
    "iban": ("IBAN", "IBANs"),
}

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
# 13–19 digits, optionally grouped by single spaces or dashes, not part of a longer number.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?!\d)")
# Two letters, two check digits, then 11–30 letters/digits, optionally in groups of four.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# International (+44 …), bracketed area code ((555) …) or grouped national numbers; not
# inside a DOI, version string or longer number (the look-arounds).
_PHONE = re.compile(
    r"(?<![\w+./:-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{2,6}(?:[ .-]\d{2,6}){0,4}"
    r"(?![\w/]|[.-]\d)"
)
# Countries in the SWIFT IBAN registry: a product code that passes mod 97 by chance (1 in 97)
# rarely also starts with one of these.
_IBAN_COUNTRIES = frozenset(
    " ".join(
        (
            "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR",
            "GB GE GI GL GR GT HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK",
            "MN MR MT MU NI NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL",
            "TN TR UA VA VG XK YE",
        )
    ).split(" ")
)
_DATE = re.compile(r"(?:19|20)\d\d[-/.]\d{1,2}[-/.]\d{1,2}")
_MASK = "#"

# Decides whether a match counts: True (the whole match), a narrower span, or False/None.
_Acceptor = Callable[[re.Match[str]], bool | tuple[int, int] | None]


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters → numbers, mod 97 == 1."""
    compact = candidate.replace(" ", "")
    if compact[:2] not in _IBAN_COUNTRIES or not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def scan_text(text: str) -> Counter[str]:
    """How many of each kind of personal data `text` contains."""
    counts: Counter[str] = Counter()
    text = _mask_matches(text, _IBAN, _valid_iban_span, "iban", counts)
    text = _mask_matches(text, _CARD, _valid_card, "card", counts)
    text = _mask_matches(text, _EMAIL, lambda match: True, "email", counts)
    for match in _PHONE.finditer(text):
        if _looks_like_phone(match.group()):
            counts["phone"] += 1
    return counts


def scan_examples(examples: Iterable[Example]) -> Counter[str]:
    """Scan every field of every example; a context shared by many questions is scanned once."""
    texts: list[str] = []
    seen_contexts: set[str] = set()
    for example in examples:
        texts += (example.instruction, example.input, example.target)
        if example.context and example.context not in seen_contexts:
            seen_contexts.add(example.context)
            texts.append(example.context)
    # One pass over all text is much faster than one per field; no pattern matches across
    # a blank line, so counts are the same.
    return scan_text("\n\n".join(texts))


def pii_warning(counts: Counter[str]) -> str | None:
    found = [
        f"{counts[kind]:,} {KIND_NAMES[kind][0 if counts[kind] == 1 else 1]}"
        for kind in KIND_NAMES
        if counts[kind]
    ]
    if not found:
        return None
    return (
        "possible personal data: "
        + ", ".join(found)
        + " (values not shown); remove or mask it before sharing the data with a model provider"
    )


def _mask_matches(
    text: str,
    pattern: re.Pattern[str],
    accept: _Acceptor,
    kind: str,
    counts: Counter[str],
) -> str:
    pieces: list[str] = []
    end = 0
    for match in pattern.finditer(text):
        span = accept(match)
        if span is None or span is False:
            continue
        start, stop = match.span() if span is True else span
        counts[kind] += 1
        pieces.append(text[end:start])
        pieces.append(_MASK * (stop - start))
        end = stop
    pieces.append(text[end:])
    return "".join(pieces)


def _valid_card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _valid_iban_span(match: re.Match[str]) -> tuple[int, int] | None:
    """The IBAN inside a match: the pattern may run on into a following capitalised word."""
    groups = match.group().split(" ")
    while groups:
        candidate = " ".join(groups)
        if iban_valid(candidate):
            return match.start(), match.start() + len(candidate)
        groups.pop()
    return None


def _looks_like_phone(candidate: str) -> bool:
    digits = sum(char.isdigit() for char in candidate)
    if _DATE.search(candidate):
        return False
    if candidate.startswith(("+", "(")):
        return 8 <= digits <= 15
    # Without a country or area code, only numbers in three or more groups count: a bare or
    # two-part number is more often an amount, an id or a reference than a phone number.
    groups = len(re.split(r"[ .-]", candidate))
    return groups >= 3 and 9 <= digits <= 15
