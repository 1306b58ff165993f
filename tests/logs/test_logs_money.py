"""Every money figure of `logs` comes from `cachescope.pricing`: set_price reaches it, cold or warm."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cachescope import UnknownModelWarning, pricing
from cachescope.logs import load, report


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pricing.reset_prices()
    yield
    pricing.reset_prices()


USAGES = [  # fresh, 5m write, 1h write, read, output
    (10, 100, 0, 1_000, 50),
    (3, 0, 2_000, 40_000, 700),
]


def _write(folder: Path, model: str) -> None:
    lines = []
    for i, (fresh, w5, w1, read, out) in enumerate(USAGES):
        usage = {
            "input_tokens": fresh,
            "cache_creation_input_tokens": w5 + w1,
            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
            "cache_read_input_tokens": read,
            "output_tokens": out,
        }
        record = {
            "sessionId": "s",
            "message": {"model": model, "id": f"msg_{i}", "usage": usage},
            "requestId": f"req_{i}",
            "type": "assistant",
            "timestamp": f"2026-09-0{i + 1}T10:00:00.000Z",
        }
        lines.append(orjson.dumps(record))
    path = folder / "projects" / "proj" / "s.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")


def _expected(model: str, price: object) -> list[float]:
    out = []
    for i, (fresh, w5, w1, read, output) in enumerate(USAGES):
        counts = pricing.UsageCounts(fresh, w5, w1, read, output)
        out.append(price(counts, model, when=dt.date(2026, 9, i + 1)))  # type: ignore[operator]
    return out


def test_a_custom_model_priced_with_set_price_is_priced_by_load_like_cost(tmp_path: Path) -> None:
    _write(tmp_path, "my-model")
    pricing.set_price("my-model", input=2.0, output=8.0)
    df = load(tmp_path, no_cache=True)
    assert df["cost"].tolist() == _expected("my-model", pricing.cost)
    assert df["cost_without_cache"].tolist() == _expected("my-model", pricing.cost_without_cache)
    assert df["cost"].iloc[0] == pytest.approx((2 * 10 + 2.5 * 100 + 0.2 * 1_000 + 8 * 50) / 1e6)


def test_set_price_reaches_a_warm_run(tmp_path: Path) -> None:
    _write(tmp_path, "my-model")
    with pytest.warns(UnknownModelWarning):
        cold = load(tmp_path)
    assert cold["cost"].isna().all()
    pricing.set_price("my-model", input=2.0, output=8.0)
    warm = load(tmp_path)
    assert warm.attrs["load_report"].files_read == 0
    assert warm["cost"].tolist() == _expected("my-model", pricing.cost)


def test_set_price_overrides_a_known_model_in_load_and_report(tmp_path: Path) -> None:
    _write(tmp_path, "claude-sonnet-4-6")
    pricing.set_price("claude-sonnet-4-6", input=1.0, output=1.0)
    df = load(tmp_path, no_cache=True)
    expected = _expected("claude-sonnet-4-6", pricing.cost)
    assert df["cost"].tolist() == expected
    assert report(df).totals["totalCost"] == pytest.approx(sum(expected))


def test_a_known_model_costs_what_cost_says(tmp_path: Path) -> None:
    _write(tmp_path, "claude-sonnet-4-6")
    df = load(tmp_path, no_cache=True)
    assert df["cost"].tolist() == _expected("claude-sonnet-4-6", pricing.cost)
