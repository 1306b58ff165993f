"""Per-model facts (prices, minimum cacheable length, aliases, lifecycle) from `data/prices.toml`.

The data file is the one place these numbers live; this module only loads and resolves it. Both the
simulator (minimums, known IDs, retirements, tokenizer) and `pricing` (rates) read through here.
"""

from __future__ import annotations

import datetime as _dt
import sys
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

RATE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@dataclass(frozen=True)
class Rates:
    """List prices in USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    def scaled(self, factor: float) -> Rates:
        """Every rate multiplied by `factor` (batch discount, fast mode, data residency)."""
        return Rates(*(getattr(self, name) * factor for name in RATE_FIELDS))


@dataclass(frozen=True)
class PriceChange:
    effective_from: _dt.date
    changes: dict[str, float]
    source: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What cachescope knows about one model ID."""

    id: str
    name: str
    min_cacheable_tokens: int
    tokenizer: str = "classic"
    aliases: tuple[str, ...] = ()
    rates: Rates | None = None
    price_changes: tuple[PriceChange, ...] = ()
    long_context_threshold: int | None = None
    long_context_rates: Rates | None = None
    fast_multiplier: float | None = None
    released: _dt.date | None = None
    deprecated: _dt.date | None = None
    retired: _dt.date | None = None
    verified: bool = True
    source: str = ""
    # tokens of the system prompt the API adds when tools are present: (auto/none, any/tool)
    tool_use_system_tokens: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def rates_at(
        self, when: _dt.date | None = None, prompt_tokens: int | None = None
    ) -> Rates | None:
        """The rates in force on `when` (default: today) for a prompt of `prompt_tokens` tokens.

        Returns None when no price is known for this model.
        """
        if self.rates is None:
            return None
        threshold = self.long_context_threshold
        if prompt_tokens is not None and threshold is not None and prompt_tokens > threshold:
            return self.long_context_rates or self.rates
        rates = self.rates
        day = when or _dt.date.today()
        for change in self.price_changes:
            if change.effective_from <= day:
                rates = replace(rates, **change.changes)
        return rates

    def is_retired(self, when: _dt.date | None = None) -> bool:
        return self.retired is not None and (when or _dt.date.today()) >= self.retired


def _rates(table: dict[str, Any]) -> Rates | None:
    if not all(name in table for name in RATE_FIELDS):
        return None
    return Rates(*(float(table[name]) for name in RATE_FIELDS))


@dataclass(frozen=True)
class ModelTable:
    """All models of a data file, with alias resolution."""

    models: dict[str, ModelInfo]
    meta: dict[str, Any]
    _index: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for model_id, info in self.models.items():
            self._index[model_id] = model_id
            for alias in info.aliases:
                self._index[alias] = model_id

    def lookup(self, model: str) -> ModelInfo | None:
        """The model for an ID or alias, or None when it is not in the table."""
        model_id = self._index.get(model)
        return self.models[model_id] if model_id is not None else None

    def with_model(self, info: ModelInfo) -> ModelTable:
        """A copy of this table with `info` added or replaced."""
        models = dict(self.models)
        models[info.id] = info
        return ModelTable(models, self.meta)

    def ids(self) -> list[str]:
        return sorted(self._index)

    @property
    def default_model(self) -> str:
        return str(self.meta.get("default_model", "claude-sonnet-5"))


def _pair(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def parse_table(data: dict[str, Any]) -> ModelTable:
    """Build a `ModelTable` from the parsed TOML document."""
    models: dict[str, ModelInfo] = {}
    for model_id, row in data.get("models", {}).items():
        long_context = row.get("long_context") or {}
        known = {
            *RATE_FIELDS,
            "name",
            "aliases",
            "min_cacheable_tokens",
            "tokenizer",
            "price_changes",
            "long_context",
            "fast_multiplier",
            "released",
            "deprecated",
            "retired",
            "verified",
            "source",
            "tool_use_system_tokens",
        }
        models[model_id] = ModelInfo(
            id=model_id,
            name=row.get("name", model_id),
            min_cacheable_tokens=int(row["min_cacheable_tokens"]),
            tokenizer=row.get("tokenizer", "classic"),
            aliases=tuple(row.get("aliases", ())),
            rates=_rates(row),
            price_changes=tuple(
                sorted(
                    (
                        PriceChange(
                            effective_from=change["effective_from"],
                            changes={k: float(change[k]) for k in RATE_FIELDS if k in change},
                            source=change.get("source", ""),
                        )
                        for change in row.get("price_changes", ())
                    ),
                    key=lambda c: c.effective_from,
                )
            ),
            long_context_threshold=long_context.get("threshold"),
            long_context_rates=_rates(long_context),
            fast_multiplier=row.get("fast_multiplier"),
            released=row.get("released"),
            deprecated=row.get("deprecated"),
            retired=row.get("retired"),
            verified=bool(row.get("verified", True)),
            source=row.get("source", ""),
            tool_use_system_tokens=_pair(row.get("tool_use_system_tokens")),
            extra={k: v for k, v in row.items() if k not in known},
        )
    return ModelTable(models, dict(data.get("meta", {})))


@cache
def default_table() -> ModelTable:
    """The table shipped with cachescope (`cachescope/data/prices.toml`)."""
    text = resources.files("cachescope").joinpath("data/prices.toml").read_text("utf-8")
    return parse_table(tomllib.loads(text))


def load_table(path: str) -> ModelTable:
    """A table from another TOML file with the same layout as the shipped one."""
    with open(path, "rb") as fh:
        return parse_table(tomllib.load(fh))
