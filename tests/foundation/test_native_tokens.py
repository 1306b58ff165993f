"""`_native/tokens.c` gives exactly the integers of `EstimatingCounter._count_py`.

The simulator's usage identities (input + cache_creation + cache_read == count_tokens) and every
fingerprint's token figures rest on these counts, so the C path must match to the unit.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachescope._native as native
from cachescope import _tokens
from cachescope._tokens import CLASSIC, V2, EstimatingCounter

MODULE = native.load("tokens")
needs_module = pytest.mark.skipif(MODULE is None, reason="no compiled accelerators")

texts = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("{}[]()<>:;,.\"'=+-*/\\|&^%$#@!?~` \n\tab")),
        st.characters(max_codepoint=0x7F),
        st.characters(min_codepoint=0x80, max_codepoint=0xFF),
        st.characters(min_codepoint=0x100, max_codepoint=0xFFFF),  # surrogates included
        st.characters(min_codepoint=0x10000),
    ),
    max_size=400,
)
factors = st.one_of(
    st.sampled_from([1.0, 1.3, 0.5, 2.0, 1e-9, -1.0, 0.0, 1e300]),
    st.floats(allow_nan=False, allow_infinity=False),
)


def test_the_tokens_module_is_built_and_fresh() -> None:
    if native.pure_requested():
        pytest.skip("CACHESCOPE_PURE is set")
    assert MODULE is not None, "run `make native`: src/cachescope/_native/tokens.c is not built"
    assert native.source_hash("tokens") == MODULE.SOURCE_HASH
    assert _tokens._native is MODULE


@needs_module
@settings(max_examples=500)
@given(texts, factors)
def test_count_equals_the_python_estimate(text: str, factor: float) -> None:
    counter = EstimatingCounter(factor)
    assert _outcome(counter.count, text) == _outcome(counter._count_py, text)
    assert _outcome(lambda t: MODULE.count(t, factor), text) == _outcome(counter._count_py, text)


def _outcome(count: Any, text: str) -> Any:
    """The count, or the error's type and message (a huge factor overflows to infinity)."""
    try:
        return count(text)
    except (ValueError, OverflowError) as error:
        return type(error), str(error)


@needs_module
@given(texts)
def test_the_shipped_counters_agree(text: str) -> None:
    for counter in (CLASSIC, V2):
        assert counter.count(text) == counter._count_py(text)
    # a long text, past any small-size path
    long = text * 50 + "x"
    assert CLASSIC.count(long) == CLASSIC._count_py(long)


@needs_module
def test_non_finite_factors_raise_what_math_ceil_raises() -> None:
    for factor in (math.nan, math.inf, -math.inf):
        counter = EstimatingCounter(factor)
        with pytest.raises(Exception) as expected:
            counter._count_py("some text")
        with pytest.raises(type(expected.value), match=str(expected.value)):
            counter.count("some text")
    assert EstimatingCounter(math.nan).count("") == 0  # empty text never reaches the float math


@needs_module
def test_other_inputs_take_the_python_path() -> None:
    from fractions import Fraction

    assert EstimatingCounter(Fraction(13, 10)).count("abc def") == V2._count_py("abc def")
    assert EstimatingCounter(2).count("abc def") == EstimatingCounter(2.0).count("abc def")

    class Text(str):
        pass

    assert CLASSIC.count(Text("a, b")) == CLASSIC._count_py("a, b")
    bad: Any = 3
    with pytest.raises(TypeError):
        MODULE.count(bad, 1.0)
    with pytest.raises(TypeError):
        MODULE.count("a", "1.0")
