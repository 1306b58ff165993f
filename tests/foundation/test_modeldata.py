"""The model table is data with sources, consistent with itself and with the installed SDK."""

from __future__ import annotations

import datetime as dt
import re

from anthropic.resources.messages.messages import DEPRECATED_MODELS

from cachescope._modeldata import RATE_FIELDS, default_table

_MONTHS = {
    m: i
    for i, m in enumerate(
        [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
        start=1,
    )
}


def _sdk_date(text: str) -> dt.date:
    month, day, year = re.match(r"(\w+) (\d+)\w*, (\d+)", text).groups()  # type: ignore[union-attr]
    return dt.date(int(year), _MONTHS[month], int(day))


def test_every_model_has_a_source_and_a_minimum() -> None:
    for info in default_table().models.values():
        assert info.source, info.id
        assert info.min_cacheable_tokens in (512, 1024, 2048, 4096), info.id


def test_retirement_dates_match_the_sdk_deprecation_table() -> None:
    # The SDK lists the models it warns about (and drops them some time after they retire, so
    # the list can be short); every one must be in the table, retiring on the SDK's date.
    table = default_table()
    assert DEPRECATED_MODELS, "the SDK's deprecation table is empty: nothing was checked"
    for model, when in DEPRECATED_MODELS.items():
        info = table.lookup(model)
        assert info is not None, f"{model} is in the SDK's deprecation table, not in prices.toml"
        assert info.retired == _sdk_date(when), model


def test_aliases_resolve_to_their_model() -> None:
    table = default_table()
    assert table.lookup("claude-sonnet-4-5-20250929").id == "claude-sonnet-4-5"  # type: ignore[union-attr]
    assert table.lookup("claude-3-5-haiku-20241022").id == "claude-3-5-haiku-latest"  # type: ignore[union-attr]
    assert table.lookup("claude-unknown-9") is None


def test_cache_prices_follow_the_multipliers_except_where_listed() -> None:
    # PR: 5m write = 1.25x, 1h write = 2x base input; Haiku 3's listed prices are rounded.
    for info in default_table().models.values():
        if info.rates is None or info.id == "claude-3-haiku-20240307":
            continue
        assert abs(info.rates.cache_write_5m - 1.25 * info.rates.input) < 1e-9, info.id
        assert abs(info.rates.cache_write_1h - 2.0 * info.rates.input) < 1e-9, info.id


def test_dated_price_change_applies_from_its_day() -> None:
    info = default_table().lookup("claude-sonnet-5-5")
    assert info is not None
    assert info.rates_at(dt.date(2026, 10, 6)).cache_read == 0.20  # type: ignore[union-attr]
    assert info.rates_at(dt.date(2026, 10, 7)).cache_read == 0.10  # type: ignore[union-attr]


def test_long_context_band_applies_above_the_threshold() -> None:
    info = default_table().lookup("claude-haiku-5-5")
    assert info is not None
    assert info.rates_at(prompt_tokens=100_000).input == 0.10  # type: ignore[union-attr]
    assert info.rates_at(prompt_tokens=100_001).input == 0.50  # type: ignore[union-attr]


def test_rates_are_complete_or_absent() -> None:
    for info in default_table().models.values():
        if info.rates is not None:
            assert all(getattr(info.rates, name) > 0 for name in RATE_FIELDS), info.id


def test_the_default_model_is_current() -> None:
    table = default_table()
    info = table.lookup(table.default_model)
    assert info is not None
    assert info.retired is None
