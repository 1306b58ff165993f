"""Cost model: hand-computed values from the spec's §4.2 prices (USD per million tokens)."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterator

import pytest

from cachescope import UnknownModelWarning, pricing
from cachescope.ledger import CallRecord


@pytest.fixture(autouse=True)
def _clean_prices() -> Iterator[None]:
    pricing.reset_prices()
    yield
    pricing.reset_prices()


def usage(
    fresh: int = 0, w5: int = 0, w1: int = 0, read: int = 0, out: int = 0, **more: object
) -> dict[str, object]:
    return {
        "input_tokens": fresh,
        "cache_creation_input_tokens": w5 + w1,
        "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
        "cache_read_input_tokens": read,
        "output_tokens": out,
        **more,
    }


# Sonnet 4.5: input 3, 5m write 3.75, 1h write 6, read 0.30, output 15.
@pytest.mark.parametrize(
    ("u", "expected"),
    [
        pytest.param(usage(fresh=100_000, out=200), (3 * 100_000 + 15 * 200) / 1e6, id="no-cache"),
        pytest.param(
            usage(fresh=50, w5=100_000, out=200), (150 + 375_000 + 3_000) / 1e6, id="5m-write"
        ),
        pytest.param(
            usage(fresh=50, w1=100_000, out=200), (150 + 600_000 + 3_000) / 1e6, id="1h-write"
        ),
        pytest.param(
            usage(fresh=50, read=100_000, out=200), (150 + 30_000 + 3_000) / 1e6, id="read"
        ),
        pytest.param(
            usage(fresh=50, w5=1_000, w1=2_000, read=100_000, out=200),
            (150 + 3_750 + 12_000 + 30_000 + 3_000) / 1e6,
            id="mixed-ttls",
        ),
    ],
)
def test_cost_matches_hand_computed_sonnet_4_5_prices_for_each_ttl_mix(
    u: dict[str, object], expected: float
) -> None:
    assert pricing.cost(u, "claude-sonnet-4-5") == pytest.approx(expected)


def test_cost_without_cache_bills_every_prompt_token_at_the_input_rate() -> None:
    u = usage(fresh=50, w5=1_000, w1=2_000, read=100_000, out=200)
    assert pricing.cost_without_cache(u, "claude-sonnet-4-5") == pytest.approx(
        (3 * 103_050 + 15 * 200) / 1e6
    )


def test_savings_is_cost_without_cache_minus_cost() -> None:
    u = usage(fresh=50, w5=1_000, w1=2_000, read=100_000, out=200)
    assert pricing.savings(u, "claude-sonnet-4-5") == pytest.approx(0.31215 - 0.0489)


def test_a_write_never_read_costs_more_than_no_caching() -> None:
    assert pricing.savings(usage(w5=1_000_000), "claude-sonnet-4-5") == pytest.approx(-0.75)


def test_dated_alias_prices_like_the_model() -> None:
    u = usage(fresh=1_000_000)
    assert pricing.cost(u, "claude-sonnet-4-5-20250929") == pytest.approx(3.0)


def test_haiku_3_uses_listed_prices_not_multipliers() -> None:
    # 5m write is listed at $0.30, not 1.25 × 0.25 = 0.3125; read $0.03, not 0.025.
    assert pricing.cost(usage(w5=1_000_000), "claude-3-haiku-20240307") == pytest.approx(0.30)
    assert pricing.cost(usage(read=1_000_000), "claude-3-haiku-20240307") == pytest.approx(0.03)


def test_haiku_5_5_prompt_over_one_hundred_thousand_tokens_bills_at_the_upper_band() -> None:
    small = usage(fresh=100_000, out=1_000)
    large = usage(fresh=1, read=100_000, out=1_000)
    assert pricing.cost(small, "claude-haiku-5-5") == pytest.approx(
        (0.10 * 100_000 + 0.5 * 1_000) / 1e6
    )
    assert pricing.cost(large, "claude-haiku-5-5") == pytest.approx(
        (0.50 * 1 + 0.05 * 100_000 + 2.50 * 1_000) / 1e6
    )


def test_sonnet_5_5_read_price_drops_from_twenty_to_ten_cents_on_2026_10_07() -> None:
    u = usage(read=1_000_000)
    assert pricing.cost(u, "claude-sonnet-5-5", when=dt.date(2026, 10, 6)) == pytest.approx(0.20)
    assert pricing.cost(u, "claude-sonnet-5-5", when=dt.date(2026, 10, 7)) == pytest.approx(0.10)


def test_batch_halves_every_rate_including_cache_rates() -> None:
    u = usage(fresh=1_000_000, w5=1_000_000, w1=1_000_000, read=1_000_000, out=1_000_000)
    full = pricing.cost(u, "claude-opus-4-5")
    assert full is not None and full == pytest.approx(5 + 6.25 + 10 + 0.5 + 25)
    assert pricing.cost(u, "claude-opus-4-5", batch=True) == pytest.approx(full / 2)


def test_batch_service_tier_in_usage_applies_the_discount() -> None:
    u = usage(fresh=1_000_000, service_tier="batch")
    assert pricing.cost(u, "claude-opus-4-5") == pytest.approx(2.5)


def test_fast_mode_doubles_opus_5_rates() -> None:
    u = usage(fresh=1_000_000, out=1_000_000, speed="fast")
    assert pricing.cost(u, "claude-opus-5") == pytest.approx(10 + 50)


def test_us_inference_geo_adds_ten_percent_on_4_6_and_later_only() -> None:
    u = usage(fresh=1_000_000, inference_geo="us")
    assert pricing.cost(u, "claude-opus-4-6") == pytest.approx(5.5)
    assert pricing.cost(u, "claude-opus-4-5") == pytest.approx(5.0)


def test_usage_without_ttl_split_counts_writes_as_five_minute() -> None:
    u = {"input_tokens": 0, "cache_creation_input_tokens": 1_000_000, "output_tokens": 0}
    assert pricing.cost(u, "claude-sonnet-4-5") == pytest.approx(3.75)


def test_sdk_usage_object_is_accepted() -> None:
    from anthropic.types import CacheCreation, Usage

    u = Usage(
        input_tokens=50,
        output_tokens=200,
        cache_creation_input_tokens=3_000,
        cache_read_input_tokens=100_000,
        cache_creation=CacheCreation(
            ephemeral_5m_input_tokens=1_000, ephemeral_1h_input_tokens=2_000
        ),
    )
    assert pricing.cost(u, "claude-sonnet-4-5") == pytest.approx(0.0489)


def test_call_record_is_accepted_with_its_own_model() -> None:
    record = CallRecord(
        time="2026-11-21T10:00:00.000Z",
        model="claude-sonnet-4-5",
        input_tokens=50,
        cache_creation_input_tokens=3_000,
        ephemeral_5m_input_tokens=1_000,
        ephemeral_1h_input_tokens=2_000,
        cache_read_input_tokens=100_000,
        output_tokens=200,
    )
    assert pricing.cost(record) == pytest.approx(0.0489)


def test_unknown_model_cost_is_none_with_one_warning_naming_model_and_set_price() -> None:
    with pytest.warns(UnknownModelWarning, match=r"claude-unknown-9.*set_price"):
        assert pricing.cost(usage(fresh=10), "claude-unknown-9") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pricing.cost(usage(fresh=10), "claude-unknown-9") is None
        assert pricing.cost_without_cache(usage(fresh=10), "claude-unknown-9") is None


def test_model_in_table_without_price_is_unknown_not_zero() -> None:
    with pytest.warns(UnknownModelWarning, match="claude-mythos-preview"):
        assert pricing.cost(usage(fresh=10), "claude-mythos-preview") is None


def test_set_price_gives_an_unknown_model_a_cost() -> None:
    pricing.set_price("my-finetune", input=2.0, output=8.0)
    u = usage(fresh=1_000_000, w5=1_000_000, w1=1_000_000, read=1_000_000, out=1_000_000)
    assert pricing.cost(u, "my-finetune") == pytest.approx(2 + 2.5 + 4 + 0.2 + 8)


def test_set_price_overrides_the_data_file() -> None:
    pricing.set_price("claude-sonnet-4-5", input=1.0, output=1.0, cache_read=0.5)
    assert pricing.cost(usage(read=1_000_000), "claude-sonnet-4-5") == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("model", "ttl", "reads"),
    [
        ("claude-sonnet-4-5", "5m", 1),
        ("claude-sonnet-4-5", "1h", 2),
        ("claude-3-haiku-20240307", "5m", 1),
        ("claude-3-haiku-20240307", "1h", 2),
        ("claude-fable-5-1", "1h", 2),
    ],
)
def test_break_even_is_one_read_for_5m_and_two_for_1h(model: str, ttl: str, reads: int) -> None:
    assert pricing.break_even_reads(model, ttl) == reads


def test_break_even_of_unknown_model_is_none() -> None:
    with pytest.warns(UnknownModelWarning):
        assert pricing.break_even_reads("claude-unknown-10", "5m") is None


def test_cost_is_never_nan_for_known_models() -> None:
    value = pricing.cost(usage(fresh=1), "claude-sonnet-5")
    assert value is not None
    assert not math.isnan(value)


# -- many calls at once: cost_arrays prices each row exactly as cost does -------------------------
ROWS = [  # model, day, fresh, 5m write, 1h write, read, output, fast
    ("claude-sonnet-4-5", dt.date(2026, 9, 1), 10, 100, 0, 1_000, 50, False),
    ("claude-haiku-5-5", dt.date(2026, 9, 1), 100_000, 0, 0, 0, 1_000, False),  # lower band
    ("claude-haiku-5-5", dt.date(2026, 9, 1), 1, 0, 0, 100_000, 1_000, False),  # upper band
    ("claude-sonnet-5-5", dt.date(2026, 10, 6), 0, 0, 0, 1_000_000, 0, False),  # before the drop
    ("claude-sonnet-5-5", dt.date(2026, 10, 7), 0, 0, 0, 1_000_000, 0, False),  # after it
    ("claude-opus-5", dt.date(2026, 9, 1), 1_000_000, 0, 0, 0, 1_000_000, True),  # fast: 2x
    ("claude-sonnet-4-5", dt.date(2026, 9, 1), 0, 0, 0, 0, 100, True),  # no fast price: unknown
    ("claude-imaginary-9", dt.date(2026, 9, 1), 5, 0, 0, 0, 5, False),  # unknown model
]


def _arrays(rows: list[tuple[object, ...]]) -> tuple[list[float], list[float]]:
    models = sorted({str(r[0]) for r in rows})
    epoch = dt.date(1970, 1, 1)
    cost, without = pricing.cost_arrays(
        models,
        [models.index(str(r[0])) for r in rows],
        [(r[1] - epoch).days for r in rows],  # type: ignore[operator]
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
        [r[6] for r in rows],
        fast=[r[7] for r in rows],
    )
    return cost.tolist(), without.tolist()


def _one(row: tuple[object, ...], price: object) -> float:
    model, day, fresh, w5, w1, read, out, fast = row
    u = usage(fresh, w5, w1, read, out, **({"speed": "fast"} if fast else {}))  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownModelWarning)
        value = price(u, str(model), when=day)  # type: ignore[operator]
    return math.nan if value is None else float(value)


def _same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def test_cost_arrays_give_exactly_what_cost_gives_row_by_row() -> None:
    cost, without = _arrays(ROWS)  # type: ignore[arg-type]
    assert _same(cost, [_one(r, pricing.cost) for r in ROWS])
    assert _same(without, [_one(r, pricing.cost_without_cache) for r in ROWS])
    assert cost[5] == pytest.approx(10 + 50)  # fast Opus 5: 2x of $5 in, $25 out
    assert math.isnan(cost[6]) and math.isnan(cost[7])


def test_cost_arrays_follow_set_price() -> None:
    row = ("my-model", dt.date(2026, 9, 1), 1_000_000, 1_000_000, 0, 1_000_000, 1_000_000, False)
    assert math.isnan(_arrays([row])[0][0])
    pricing.set_price("my-model", input=2.0, output=8.0)
    cost, without = _arrays([row])
    assert cost == [pytest.approx(2 + 2.5 + 0.2 + 8)] and cost == [_one(row, pricing.cost)]
    assert without == [pytest.approx(2 * 3 + 8)]


def test_cost_arrays_of_no_rows_are_empty() -> None:
    cost, without = pricing.cost_arrays([], [], [], [], [], [], [], [])
    assert len(cost) == len(without) == 0
