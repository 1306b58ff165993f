"""The cheap looks that `rules.py` attaches to its rules.

A *gate* looks at the text's shape around an anchor (`low`: lower-cased, every digit a "0") and
says whether the rule's regex is worth running there; a *confirm* check takes a regex match and
says whether it really is a buster. Factories (`digit_after(16)`) keep the rule table short.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import pairwise

Gate = Callable[[str, int], bool]
Confirm = Callable[[re.Match[str]], bool]


# -- gates ---------------------------------------------------------------------------------------


def digit_after(width: int, skip: int = 0) -> Gate:
    """A digit in the `width` characters from the anchor (after the first `skip`)."""
    return lambda low, at: "0" in low[at + skip : at + width]


def digit_before(width: int) -> Gate:
    """A digit in the `width` characters before the anchor."""
    return lambda low, at: "0" in low[max(0, at - width) : at]


def digit_around(before: int, after: int) -> Gate:
    return lambda low, at: "0" in low[max(0, at - before) : at + after]


def word_start_then_digit(width: int) -> Gate:
    """The anchor starts a word and a digit follows within `width` characters."""
    return lambda low, at: (at == 0 or not low[at - 1].isalpha()) and "0" in low[at : at + width]


def label_after(width: int, *, digit: bool = False) -> Gate:
    """A `:` or `=` after the anchor (and a digit, when asked) within `width` characters."""

    def gate(low: str, at: int) -> bool:
        after = low[at : at + width]
        return (":" in after or "=" in after) and (not digit or "0" in after)

    return gate


def word_after(width: int, words: tuple[str, ...], skip: int = 0) -> Gate:
    """One of `words` within `width` characters from the anchor (after the first `skip`)."""
    return lambda low, at: any(word in low[at + skip : at + width] for word in words)


def word_before(width: int, words: tuple[str, ...]) -> Gate:
    return lambda low, at: any(word in low[max(0, at - width) : at] for word in words)


def ends_with_before(width: int, endings: tuple[str, ...]) -> Gate:
    """The `width` characters before the anchor end with one of `endings`."""
    return lambda low, at: low[max(0, at - width) : at].endswith(endings)


def one_before(char: str, width: int) -> Gate:
    """Exactly one `char` in the `width` characters before the anchor (one date separator)."""
    return lambda low, at: low[max(0, at - width) : at].count(char) == 1


def one_after(char: str, skip: int, width: int) -> Gate:
    return lambda low, at: low[at + skip : at + width].count(char) == 1


_DAY_PARTS = (
    *("last night", "tonight", "today", "yesterday"),
    *("this morning", "this afternoon", "this evening"),
)
_ZONES = ("utc", "gmt", "st", "dt", "cet", "bst", "ist", "jst")
_NOW_WORDS = (
    *("now", "currently", "time is", "it is", "it's", "as of"),
    *("local time", "time in", "time at", "clock "),
    *("started", "updated", "generated", "refreshed", "synced", "fetched", "created", "last seen"),
    *("yesterday", "today", "tonight"),
)


def clock_gate(low: str, at: int) -> bool:
    """At "0:00": H:MM:SS always; a bare HH:MM only with a zone after it, a "now" word before
    it or a part of the day after it."""
    after = low[at + 4 : at + 10]
    if after.startswith(":00"):
        return True
    before = low[max(0, at - 28) : at]
    if any(zone in after for zone in _ZONES) or any(word in before for word in _NOW_WORDS):
        return True
    later = low[at + 4 : at + 24]
    return any(word in later for word in _DAY_PARTS)


# -- confirm checks ------------------------------------------------------------------------------


def random_looking(token: str) -> bool:
    """At least four letter/digit alternations: `Zq8Lm3Np0Rx7`, not `x86_64` or `utf8_decoder`."""
    if token[:2] in ("0x", "0X"):  # a hex literal in code is a constant
        return False
    kinds = ["d" if c.isdigit() else "l" if c.isalpha() else "" for c in token]
    flips = sum(1 for a, b in pairwise(kinds) if a and b and a != b)
    return flips >= 4 and sum(c.isdigit() for c in token) >= 3


_PHONE_WORDS = re.compile(r"(?i:phone|\btel\b|call|fax|hotline|helpline|contact|sms|whatsapp|line)")
_NUMBER_LABEL = re.compile(r"(?i:\b(?:no|nos|num|number|ref|reference|id|code|is)\b|[#:])")
_PHONE_SHAPE = re.compile(r"(?:1[ -])?\(?\d{3}\)?[ -]\d{3}[ -]\d{4}")
_BARE_NOUN = re.compile(r"[A-Za-z]+ ")
_CARD_SHAPE = re.compile(r"\d{4}(?:[ -]\d{4}){2,3}")


def entity_number(match: re.Match[str]) -> bool:
    """Digits in groups are an account or member number only with six digits or more, a label
    ("no.", "number:", "is") or four-digit groups, and nothing saying it is a phone number."""
    grouped = match.group("grouped")
    if grouped is None:
        return True
    head = match.string[match.start() : match.start("grouped")]
    if sum(c.isdigit() for c in grouped) < 6 or _PHONE_WORDS.search(head):
        return False
    if _PHONE_SHAPE.fullmatch(grouped):
        return False
    if len(set(re.split(r"[ -]", grouped))) == 1:  # "4242 4242 4242 4242", a test card
        return False
    if _NUMBER_LABEL.search(head) or _BARE_NOUN.fullmatch(head):  # "Ticket 4471-22"
        return True
    return _CARD_SHAPE.fullmatch(grouped) is not None


def process_number(match: re.Match[str]) -> bool:
    """Not a fixed, configured id: system users (uid < 1000), the first user (1000), `nobody`
    (65534), low pids; a `name[1234]` tag only with a number that is not round (`buf[4096]`)."""
    tag = match.group("tag")
    if tag is not None:
        number = int(tag)
        return number % 10 != 0 and number & (number - 1) != 0
    number = int(match.group("id"))
    if match.group("kind").lower().endswith(("uid", "gid")):
        return number > 1000 and number != 65534
    return number >= 100


def measured(match: re.Match[str]) -> bool:
    """A named measurement ("latency 23 ms") but not a round target or setting ("latency: 200
    ms", "ping 100 ms"): measured values have decimals or are not multiples of five."""
    value = match.group("measured")
    return value is None or "." in value or int(value) % 5 != 0


def token_value(match: re.Match[str]) -> bool:
    """A labelled token of 12 characters or more; a shorter one only when it looks random."""
    token = match.group("token")
    return len(token) >= 12 or random_looking(token)
