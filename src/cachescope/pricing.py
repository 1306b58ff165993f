"""What a call cost, what it would have cost without caching, and what caching saved.

Prices come from the dated data file (`cachescope/data/prices.toml`, through `_modeldata`), never
from code. The cost formula is the spec's §4.6:

    cost = input·input_tokens + write_5m·ephemeral_5m + write_1h·ephemeral_1h
         + read·cache_read_input_tokens + output·output_tokens

with the long-context band chosen from the whole prompt (Haiku 5.5, 100k), the rates in force on the
day of the call (dated price changes), `speed="fast"` (the model's fast multiplier), the batch
discount (×0.5) and `inference_geo="us"` (×1.1 on Claude 4.6 and later) stacked on top. Cost without
caching bills every prompt token (fresh, written and read) at the base input rate.

A model without a known price gets an explicit unknown cost (None) and one `UnknownModelWarning`
per model that says how to add the price with `set_price` — never a silent $0 or a guess.
Web-search charges ($ per search) are not in the data file and are not included.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachescope._errors import UnknownModelWarning
from cachescope._modeldata import ModelInfo, Rates, default_table

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Rates",
    "UsageCounts",
    "break_even_reads",
    "cost",
    "cost_arrays",
    "cost_without_cache",
    "rates",
    "reset_prices",
    "savings",
    "set_price",
    "usage_counts",
]

_PER_TOKEN = 1e-6  # rates are per million tokens

# Standard cache multipliers of the base input rate (spec §4.1), used only to fill in the rates a
# `set_price` call leaves out.
_DEFAULT_WRITE_5M = 1.25
_DEFAULT_WRITE_1H = 2.0
_DEFAULT_READ = 0.1

# `inference_geo="us"` is priced (and accepted) from the Claude 4.6 generation on (spec §4.4).
_RESIDENCY_FROM = (4, 6)

_lock = threading.Lock()
_overrides: dict[str, Rates] = {}
_warned: set[str] = set()
# Known effective rates by (model, day, long-context band, speed, batch, inference_geo); cleared by
# `set_price` and `reset_prices`. Unknown prices are not remembered (they warn through `rates`).
_RATES_MEMO: dict[tuple[Any, ...], Rates] = {}
_RATES_MEMO_LIMIT = 4096
_generation = [0]  # bumped by every change of the overrides


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """The billable numbers of one call's `usage`, whatever form it came in."""

    input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    speed: str | None = None
    inference_geo: str | None = None
    service_tier: str | None = None

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """Every input token of the request: fresh + written + read (spec §3.2)."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens


def _get(source: Any, name: str) -> Any:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _mapping_get(source: Any, name: str) -> Any:
    return source.get(name)


def _attr_get(source: Any, name: str) -> Any:
    return getattr(source, name, None)


def _getter(source: Any) -> Callable[[Any, str], Any]:
    """`_get` for one object, with its Mapping check done once."""
    return _mapping_get if isinstance(source, Mapping) else _attr_get


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def usage_counts(usage: Any) -> UsageCounts:
    """Read the billable numbers from an SDK `Usage`, a usage dict (nested or flat) or a `CallRecord`.

    When only `cache_creation_input_tokens` is known (no 5m/1h split), the tokens count as 5-minute
    writes, the API's default TTL.
    """
    if isinstance(usage, UsageCounts):
        return usage
    # One Mapping check per object (an ABC check is slow) instead of one per field.
    get = _getter(usage)
    creation_total = _int(get(usage, "cache_creation_input_tokens"))
    split = get(usage, "cache_creation")
    if split is not None:
        split_get = _getter(split)
        w5 = split_get(split, "ephemeral_5m_input_tokens")
        w1 = split_get(split, "ephemeral_1h_input_tokens")
    else:
        w5 = w1 = None
    if w5 is None and w1 is None:  # flat form (ledger lines, CallRecord)
        w5 = get(usage, "ephemeral_5m_input_tokens")
        w1 = get(usage, "ephemeral_1h_input_tokens")
    write_5m, write_1h = _int(w5), _int(w1)
    if write_5m + write_1h == 0 and creation_total:
        write_5m = creation_total
    return UsageCounts(
        _int(get(usage, "input_tokens")),
        write_5m,
        write_1h,
        _int(get(usage, "cache_read_input_tokens")),
        _int(get(usage, "output_tokens")),
        get(usage, "speed"),
        get(usage, "inference_geo"),
        get(usage, "service_tier"),
    )


def set_price(
    model: str,
    *,
    input: float,
    output: float,
    cache_write_5m: float | None = None,
    cache_write_1h: float | None = None,
    cache_read: float | None = None,
) -> None:
    """Set (or override) a model's prices, in USD per million tokens, for this process.

    Parameters
    ----------
    model:
        The model ID as sent to the API (an alias of a known model overrides that model).
    input, output:
        Base input and output prices.
    cache_write_5m, cache_write_1h, cache_read:
        Cache prices; when left out they follow the standard multipliers of `input`
        (1.25×, 2× and 0.1×, spec §4.1).

    An override replaces the data file's rates for every date and prompt size (no long-context
    band). `reset_prices()` removes all overrides.
    """
    rates = Rates(
        input=float(input),
        output=float(output),
        cache_write_5m=float(
            cache_write_5m if cache_write_5m is not None else input * _DEFAULT_WRITE_5M
        ),
        cache_write_1h=float(
            cache_write_1h if cache_write_1h is not None else input * _DEFAULT_WRITE_1H
        ),
        cache_read=float(cache_read if cache_read is not None else input * _DEFAULT_READ),
    )
    info = default_table().lookup(model)
    with _lock:
        _overrides[info.id if info is not None else model] = rates
        _warned.discard(model)
        _RATES_MEMO.clear()
        _generation[0] += 1


def reset_prices() -> None:
    """Forget every `set_price` override (and which unknown models were already warned about)."""
    with _lock:
        _overrides.clear()
        _warned.clear()
        _RATES_MEMO.clear()
        _generation[0] += 1


def _warn_unknown(model: str, why: str) -> None:
    with _lock:
        if model in _warned:
            return
        _warned.add(model)
    warnings.warn(
        f"No price is known for model {model!r} ({why}); its cost is reported as unknown (None). "
        f"Add one with cachescope.pricing.set_price({model!r}, input=..., output=...) "
        "(USD per million tokens).",
        UnknownModelWarning,
        stacklevel=3,
    )


def _day(when: Any) -> _dt.date | None:
    if when is None:
        return None
    if isinstance(when, _dt.datetime):
        return when.date()
    if isinstance(when, _dt.date):
        return when
    if isinstance(when, (int, float)):
        return _dt.datetime.fromtimestamp(float(when), tz=_dt.timezone.utc).date()
    if isinstance(when, str):
        return _dt.datetime.fromisoformat(when.replace("Z", "+00:00")).date()
    raise TypeError(f"`when` must be a date, datetime, epoch seconds or ISO string; got {when!r}.")


def _version(info: ModelInfo) -> tuple[int, int] | None:
    match = re.search(r"(\d+)(?:\.(\d+))?", info.name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def rates(
    model: str,
    *,
    when: Any = None,
    prompt_tokens: int | None = None,
    speed: str | None = None,
    batch: bool = False,
    inference_geo: str | None = None,
    warn: bool = True,
) -> Rates | None:
    """The effective per-million-token rates for one call, or None when the price is unknown.

    Parameters
    ----------
    model:
        Model ID or alias.
    when:
        Day of the call (date, datetime, epoch seconds or ISO string); default today.
    prompt_tokens:
        Whole prompt size (fresh + written + read), which picks the long-context band.
    speed:
        `"fast"` applies the model's fast-mode multiplier (unknown price when it has none).
    batch:
        Message Batches discount (×0.5, stacks with everything else).
    inference_geo:
        `"us"` applies the data-residency multiplier on Claude 4.6 and later.
    warn:
        Warn (once per model) when the price is unknown.
    """
    table = default_table()
    info = table.lookup(model)
    try:
        day = _day(when)
    except (TypeError, ValueError):
        memo_key = None  # raised below only where the day is needed, as without the memo
    else:
        if day is None:
            day = _dt.date.today()  # what `rates_at` takes for no day, fixed for the memo key
        threshold = info.long_context_threshold if info is not None else None
        long_context = (
            prompt_tokens is not None and threshold is not None and prompt_tokens > threshold
        )
        memo_key = (model, day, long_context, speed, batch, inference_geo)
        try:
            hash(memo_key)
        except TypeError:  # odd values from a hand-made usage dict: no memo
            memo_key = None
    with _lock:
        known = _RATES_MEMO.get(memo_key) if memo_key is not None else None
        if known is not None:
            return known
        override = _overrides.get(info.id if info is not None else model)
        generation = _generation[0]
    if override is not None:
        found: Rates | None = override
    elif info is None:
        if warn:
            _warn_unknown(model, "not in cachescope's model table")
        return None
    else:
        found = info.rates_at(day if memo_key is not None else _day(when), prompt_tokens)
        if found is None:
            if warn:
                _warn_unknown(model, "no published price in cachescope's data file")
            return None
    assert found is not None
    factor = 1.0
    if speed == "fast":
        multiplier = info.fast_multiplier if info is not None else None
        if multiplier is None:
            if warn:
                _warn_unknown(f"{model} (speed='fast')", "no fast-mode price in the data file")
            return None
        factor *= float(multiplier)
    if batch:
        factor *= float(table.meta.get("batch_discount", 0.5))
    if inference_geo == "us" and info is not None:
        version = _version(info)
        if version is None or version >= _RESIDENCY_FROM:
            factor *= float(table.meta.get("data_residency_multiplier", 1.1))
    result = found if factor == 1.0 else found.scaled(factor)
    if memo_key is not None:
        with _lock:
            if generation == _generation[0]:  # no set_price/reset_prices since the lookup
                if len(_RATES_MEMO) >= _RATES_MEMO_LIMIT:
                    _RATES_MEMO.clear()
                _RATES_MEMO[memo_key] = result
    return result


def _rates_for(
    usage: Any, model: str | None, batch: bool, when: Any
) -> tuple[UsageCounts, Rates | None]:
    counts = usage_counts(usage)
    if model is None:
        model = _get(usage, "model")
    if when is None:
        when = _get(usage, "time")  # a CallRecord carries the day it was made
    if not model:
        raise ValueError("cost() needs the model: pass model=... (the usage does not name one).")
    found = rates(
        str(model),
        when=when,
        prompt_tokens=counts.prompt_tokens,
        speed=counts.speed,
        batch=batch or counts.service_tier == "batch",
        inference_geo=counts.inference_geo,
    )
    return counts, found


def cost(
    usage: Any, model: str | None = None, *, batch: bool = False, when: Any = None
) -> float | None:
    """USD cost of one call's usage, or None when the model's price is unknown.

    `usage` may be an SDK `Usage`, a usage dict (as in a response or a ledger line) or a
    `CallRecord` (whose model and time are used when `model`/`when` are not given).
    """
    counts, r = _rates_for(usage, model, batch, when)
    if r is None:
        return None
    return _cost(counts, r)


def cost_without_cache(
    usage: Any, model: str | None = None, *, batch: bool = False, when: Any = None
) -> float | None:
    """What the same call would have cost with no caching: every prompt token at the input rate."""
    counts, r = _rates_for(usage, model, batch, when)
    if r is None:
        return None
    return _cost_without_cache(counts, r)


def _cost(counts: UsageCounts, r: Rates) -> float:
    return _PER_TOKEN * (
        r.input * counts.input_tokens
        + r.cache_write_5m * counts.cache_write_5m_tokens
        + r.cache_write_1h * counts.cache_write_1h_tokens
        + r.cache_read * counts.cache_read_tokens
        + r.output * counts.output_tokens
    )


def _cost_without_cache(counts: UsageCounts, r: Rates) -> float:
    return _PER_TOKEN * (r.input * counts.prompt_tokens + r.output * counts.output_tokens)


def cost_arrays(
    models: Sequence[str],
    model_codes: Any,
    days: Any,
    input_tokens: Any,
    cache_write_5m_tokens: Any,
    cache_write_1h_tokens: Any,
    cache_read_tokens: Any,
    output_tokens: Any,
    fast: Any = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """`cost` and `cost_without_cache` of many calls at once, as float arrays (NaN: unknown price).

    Each row is priced as `cost` prices it (the same rates, from `rates`, and the same formula), so
    `set_price` overrides reach these figures too. No warning is given: a caller with an unknown
    model finds NaN in its rows and says so itself.

    Parameters
    ----------
    models, model_codes:
        Row i's model is `models[model_codes[i]]` (IDs or aliases).
    days:
        Row i's UTC day, as whole days since 1970-01-01.
    input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, output_tokens:
        Row i's billable counts (as in `UsageCounts`).
    fast:
        Row i was made with `speed="fast"` (default: none was).
    """
    import numpy as np

    codes = np.asarray(model_codes, dtype=np.int64)
    n = len(codes)
    day = np.asarray(days, dtype=np.int64)
    counts = [
        np.asarray(c, dtype=np.int64)
        for c in (
            input_tokens,
            cache_write_5m_tokens,
            cache_write_1h_tokens,
            cache_read_tokens,
            output_tokens,
        )
    ]
    is_fast = np.zeros(n, dtype=bool) if fast is None else np.asarray(fast, dtype=bool)
    prompt = counts[0] + counts[1] + counts[2] + counts[3]
    if n == 0:
        return np.zeros(0), np.zeros(0)
    # The rates depend on (model, day, long-context band, speed) only: look them up once per
    # combination, with the first row of each as the one `rates` sees.
    table = default_table()
    threshold = np.array([_threshold(table.lookup(name)) for name in models] or [0], dtype=np.int64)
    band = prompt > threshold[codes]
    first_day = int(day.min())
    combined = ((codes * (int(day.max()) - first_day + 1) + (day - first_day)) * 2 + band) * 2
    combined += is_fast
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    grid = np.full((len(first), 5), np.nan)
    epoch = _dt.date(1970, 1, 1)
    for j, row in enumerate(first.tolist()):
        found = rates(
            models[int(codes[row])],
            when=epoch + _dt.timedelta(days=int(day[row])),
            prompt_tokens=int(prompt[row]),
            speed="fast" if is_fast[row] else None,
            warn=False,
        )
        if found is not None:
            grid[j] = (
                found.input,
                found.cache_write_5m,
                found.cache_write_1h,
                found.cache_read,
                found.output,
            )
    per_row = grid[inverse.reshape(-1)]
    fresh, write_5m, write_1h, read, output = counts
    # the same operations, in the same order, as `_cost` and `_cost_without_cache`
    cost = _PER_TOKEN * (
        per_row[:, 0] * fresh
        + per_row[:, 1] * write_5m
        + per_row[:, 2] * write_1h
        + per_row[:, 3] * read
        + per_row[:, 4] * output
    )
    without_cache = _PER_TOKEN * (per_row[:, 0] * prompt + per_row[:, 4] * output)
    return cost, without_cache


def _threshold(info: ModelInfo | None) -> int:
    """The prompt size above which `info`'s long-context rates apply (never: the largest int64)."""
    if info is None or info.long_context_threshold is None:
        return 2**63 - 1
    return int(info.long_context_threshold)


def savings(
    usage: Any, model: str | None = None, *, batch: bool = False, when: Any = None
) -> float | None:
    """`cost_without_cache - cost` (negative when writes were not paid back by reads)."""
    counts, r = _rates_for(usage, model, batch, when)
    if r is None:
        return None
    return _PER_TOKEN * (
        r.input * (counts.cache_read_tokens + counts.cache_write_tokens)
        - (
            r.cache_write_5m * counts.cache_write_5m_tokens
            + r.cache_write_1h * counts.cache_write_1h_tokens
            + r.cache_read * counts.cache_read_tokens
        )
    )


def break_even_reads(model: str, ttl: str = "5m", *, when: Any = None) -> int | None:
    """How many cache reads a write must get before caching is cheaper than not caching.

    Caching a prefix and reading it n times costs `write + n·read`; sending it n + 1 times uncached
    costs `(n + 1)·input`. The answer is the smallest whole n where caching costs no more: 1 for
    "5m" and 2 for "1h" at the standard multipliers (spec §4.1). None when the price is unknown.
    """
    if ttl not in ("5m", "1h"):
        raise ValueError(f'ttl must be "5m" or "1h"; got {ttl!r}.')
    r = rates(model, when=when)
    if r is None:
        return None
    write = r.cache_write_5m if ttl == "5m" else r.cache_write_1h
    if r.input <= r.cache_read:
        raise ValueError(f"Reads of {model!r} cost no less than fresh input; caching never pays.")
    return max(0, math.ceil((write - r.input) / (r.input - r.cache_read) - 1e-12))


def one_hour_break_even(
    write_5m: float | None, write_1h: float | None, read: float | None, long_gaps: int = 0
) -> float | None:
    """Gaps of 5–60 minutes per cache write that a 1h TTL needs to cost less than 5m.

    With 5m every such gap rewrites the prefix (a 5m write instead of a read); with 1h only gaps
    beyond an hour do (`long_gaps` of them), but every write costs the 1h rate. So 1h wins when
    `medium_gaps × (write_5m − read) > (1 + long_gaps) × (write_1h − write_5m)`. Rates are per
    million tokens (any unit, the same for all three); None when one is unknown, infinity when a
    5m write costs no more than a read.
    """
    if write_5m is None or write_1h is None or read is None:
        return None
    saved = write_5m - read
    if saved <= 0:
        return math.inf
    return (write_1h - write_5m) / saved * (1 + long_gaps)
