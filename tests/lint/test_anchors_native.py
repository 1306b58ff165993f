"""The compiled anchor search (`cachescope._native.anchors.find_all`) against its pure twin.

`lint` finds each rule's anchors in a shape of the text; the compiled module finds all of a
shape's anchors in one pass. Whatever it returns must be exactly `_lint._positions` per anchor,
and `lint` must report the same findings either way.
"""

from __future__ import annotations

import importlib.util
import random
import string
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachescope import _lint, lint
from cachescope._native import load

native = load("anchors")
needs_native = pytest.mark.skipif(native is None, reason="no compiled accelerators")

# A small alphabet so anchors occur often, overlap and share first bytes.
ALPHABET = "ab0:_# \n"


@needs_native
def test_the_module_is_built_and_fresh() -> None:
    import cachescope._native as natives

    assert natives.source_hash("anchors") == native.SOURCE_HASH


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    text=st.text(ALPHABET, max_size=300),
    anchors=st.lists(st.text(ALPHABET, min_size=1, max_size=5), max_size=12),
)
def test_find_all_is_positions_per_anchor(text: str, anchors: list[str]) -> None:
    assert native.find_all(text, anchors) == [_lint._positions(text, a) for a in anchors]


@needs_native
def test_find_all_on_the_real_anchor_sets() -> None:
    rng = random.Random(5)
    words = ["jan", "0:00", "req_", "#", "today", "monday", "0000-00-00", "id:", "seed", "x"]
    text = " ".join(rng.choice(words + list(string.ascii_lowercase)) for _ in range(20_000))
    for shape_name, anchors in _lint._SHAPE_ANCHORS.items():
        shape = text.translate(_lint._SHAPE_TABLES[shape_name])
        assert native.find_all(shape, anchors) == [_lint._positions(shape, a) for a in anchors]


@needs_native
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"bytes", ["a"]), TypeError),
        (("text", [b"a"]), TypeError),
        (("text", 5), TypeError),
        (("text", [""]), ValueError),
        (("caf\u00e9", ["a"]), ValueError),
        (("text", ["\u00e9"]), ValueError),
        (("text", ["a"] * 5000), ValueError),
        (("text",), TypeError),
    ],
)
def test_hostile_input_raises(args: tuple[object, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        native.find_all(*args)


def _lint_quality_module() -> Any:
    """tests/stability/test_lint_quality.py (its labelled corpus and buster injector)."""
    path = Path(__file__).parents[1] / "stability" / "test_lint_quality.py"
    spec = importlib.util.spec_from_file_location("_lint_quality_for_anchors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@needs_native
def test_lint_finds_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    quality = _lint_quality_module()
    MODEL, _clean_files, _inject = quality.MODEL, quality._clean_files, quality._inject
    rng = random.Random(11)
    prompts = [_inject("x", text, rng, count=4)[0] for text in _clean_files().values()]
    fast = [lint(p, model=MODEL) for p in prompts]
    monkeypatch.setattr(_lint, "_load_native", lambda name: None)
    pure = [lint(p, model=MODEL) for p in prompts]
    assert fast == pure
    assert sum(map(len, fast)) > len(prompts)
