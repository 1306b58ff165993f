"""Token estimation: a deterministic stand-in for Claude's tokenizer, behind a small interface.

No official offline tokenizer exists for current Claude models (spec §5). The estimator counts a
token per word and adds weight for what real tokenizers split finely: capitals, digits,
punctuation (JSON is dense with it) and non-ASCII text. Its constants are fitted to real counts
published in the cacheeconomics repository (see `tests/foundation/test_tokens.py`) and round down,
so a prefix near a model's minimum comes out "not cached" rather than cached by mistake.

Counts are made per block and summed, so totals are exact sums of their parts: the simulator's
`input + cache_creation + cache_read` always equals its `count_tokens`. Models on the newer
tokenizer ("v2": Opus 4.7 and later) count about 30% more. Plug a better counter in by passing any
object with `count(text) -> int` (see `TokenCounter`).
"""

from __future__ import annotations

import math
from typing import Protocol

# Tokens per run of ASCII letters: common English words are one token each, whatever their length.
WORD_WEIGHT = 1.0
# Extra tokens per capital letter: runs of capitals ("SHPMT", "QQ") split into short pieces.
UPPER_WEIGHT = 0.45
# Tokens per digit: numbers split into groups of a few digits.
DIGIT_WEIGHT = 0.6
# Tokens per ASCII punctuation character or newline: most are a token, a few merge (`":"`).
PUNCT_WEIGHT = 0.7
# Tokens per UTF-8 byte of a non-ASCII character: a CJK character or an em dash (3 bytes) is one.
NON_ASCII_WEIGHT = 1 / 3
# Multiplier of the newer tokenizer generation (spec §4.2: "about 30% more tokens").
V2_FACTOR = 1.3


def _byte_table(classify: dict[bytes, bytes], default: bytes) -> bytes:
    """A `bytes.translate` table: each byte in a key maps to its value, any other to `default`."""
    table = bytearray(default * 256)
    for members, cls in classify.items():
        for byte in members:
            table[byte] = cls[0]
    return bytes(table)


_LOWER = bytes(range(ord("a"), ord("z") + 1))
_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_NON_ASCII = bytes(range(0x80, 0x100))
# One class byte per input byte: lower "a", capital "A", digit "0", blank " ", non-ASCII "x";
# everything else (punctuation, newline, control characters) is punctuation ".".
_CLASSES = _byte_table(
    {_LOWER: b"a", _UPPER: b"A", b"0123456789": b"0", b" \t\r": b" ", _NON_ASCII: b"x"}, b"."
)
# Letters "a", anything else " ": a word starts at each " a".
_LETTERS = _byte_table({_LOWER + _UPPER: b"a"}, b" ")


class TokenCounter(Protocol):
    """Anything that turns text into a token count."""

    def count(self, text: str) -> int: ...


class EstimatingCounter:
    """The default estimator.

    Parameters
    ----------
    factor:
        Multiplier for the tokenizer generation: 1.0 for the classic tokenizer, 1.3 for "v2".
    """

    __slots__ = ("factor",)

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def count(self, text: str) -> int:
        """Estimated tokens of `text`: at least 1 for any non-empty text, 0 for ""."""
        if not text:
            return 0
        data = text.encode("utf-8", "surrogatepass")
        classes = data.translate(_CLASSES)
        letters = data.translate(_LETTERS)
        words = letters.count(b" a") + letters.startswith(b"a")
        estimate = (
            words * WORD_WEIGHT
            + classes.count(b"A") * UPPER_WEIGHT
            + classes.count(b"0") * DIGIT_WEIGHT
            + classes.count(b".") * PUNCT_WEIGHT
            + classes.count(b"x") * NON_ASCII_WEIGHT
        )
        # The small margin keeps float noise (10 * 0.7 = 7.000000000000001) from adding a token.
        return max(1, math.ceil(estimate * self.factor - 1e-9))

    def __repr__(self) -> str:
        return f"EstimatingCounter(factor={self.factor})"


CLASSIC = EstimatingCounter(1.0)
V2 = EstimatingCounter(V2_FACTOR)


def counter_for(tokenizer: str) -> EstimatingCounter:
    """The estimator for a tokenizer generation named in the model table ("classic" or "v2")."""
    return V2 if tokenizer == "v2" else CLASSIC


def estimate_tokens(text: str, tokenizer: str = "classic") -> int:
    """Estimated tokens of `text` for a tokenizer generation ("classic" or "v2")."""
    return counter_for(tokenizer).count(text)
