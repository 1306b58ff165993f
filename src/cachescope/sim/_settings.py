"""The simulator's settings: every rule the documentation leaves open is a switch here.

Defaults follow spec §8 (the suggested model) and stay on the conservative side: a layout that
caches here should cache on the API. Each field says which open question (spec §9) it answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from cachescope.tokens import TokenCounter


@dataclass(frozen=True)
class SimSettings:
    """Settings of a `Simulator` (pass any of them as keyword arguments to the constructor).

    Parameters
    ----------
    lookback:
        Positions checked per breakpoint, the breakpoint itself first (PC: 20).
    lookback_unit:
        What one lookback position is (spec §9.1, undocumented). "block": each tool definition,
        each system block (a string system prompt is one) and each message content block (string
        content is one). "message": each tool, each system block and each whole message.
    ttl_grace_seconds:
        Extra life after the TTL. The API deletes entries "promptly, though not immediately", so
        real hits slightly past the TTL happen; 0 expires exactly at the TTL (conservative).
    cross_ttl_reads:
        Whether a breakpoint may read an entry written with the other TTL (spec §9.7, undocumented).
        True: any live entry with the same prefix is a hit; False: only an entry of the same TTL.
    refresh:
        Which entries a read refreshes (spec §1.6, §9.7). "reached" (default): the entry that was
        read and every live entry at this request's breakpoints before it, since the read prefix
        passes through them (PC's multi-turn example: a block that was a breakpoint earlier "still
        counts as a hit and a refresh if it is reached within the TTL"). "hit": only the entry
        that was read.
    min_cacheable_tokens:
        Override of the per-model minimum from the model table (`models=`): an int for every
        model, or a mapping model ID → minimum (others keep the table's value).
    minimum_applies_to:
        What the minimum is measured against (spec §9.6). "prefix": the whole prefix up to the
        breakpoint (the reading that fits the docs and AWS); "segment": the tokens since the
        previous breakpoint of the same request (Bedrock's per-checkpoint spacing).
    settings_before_tools:
        Models that render thinking and effort ahead of tools and system (spec §9.2, not listed in
        the docs): True for every model, False for none (default), or a collection of model IDs.
        On those, a thinking/effort change invalidates the whole prefix instead of the messages.
    retired_models:
        "not_found" (default): a model past its `retired` date in the model table gets a 404
        `not_found_error`, as from the API. "serve": simulate it anyway (for replaying old logs).
    availability:
        When a written entry can be read (PC: once the writing response has started).
        "ttft": at request start + simulated time to first token; "immediate": as soon as the
        request is handled; "auto" (default): "ttft" on a `VirtualClock` or when `sleep` is on,
        "immediate" on the real clock without sleeping (the caller has seen the response by then).
    auto_advance:
        On a `VirtualClock`, move the clock by each request's simulated total time after it is
        handled, as a caller that waits for the response would see. Requests sent inside
        `with sim.concurrently():` all start at the same instant (a parallel fan-out).
    sleep:
        On the real clock, actually wait the simulated latency before answering. Never on a
        `VirtualClock`.
    latency_base_ms, latency_ms_per_uncached_token, latency_ms_per_cached_token,
    latency_ms_per_output_token:
        The latency model: time to first token = base + uncached input × per-uncached +
        cache-read tokens × per-cached; total = time to first token + output × per-output.
        Reported in the `x-cachescope-ttft-ms` / `x-cachescope-total-ms` headers.
    retry_after_ms:
        The `retry-after-ms` header sent with injected 429/500/504/529 faults (the SDK honours it
        before `retry-after`), so the SDK's real retry loop runs fast in tests. None: send only
        the API's own `retry-after` on 429 and let the SDK back off as it would against the API.
    fault_seed:
        Seed of the RNG behind probabilistic faults.
    max_request_bytes:
        Bodies above this get 413 `request_too_large` (the API's 32 MB).
    diagnostics_history:
        Messages remembered per workspace for `diagnostics.previous_message_id`.
    counter:
        A token counter (`count(text) -> int`) used for every model instead of the built-in
        estimator for the model's tokenizer generation.
    tool_use_system_prompt:
        Count the system prompt the API adds when tools are present (spec §4.5; e.g. 496 tokens
        on Haiku 4.5) on the first tool. Off for replays of recorded positions, whose token
        counts already hold it.
    """

    lookback: int = 20
    lookback_unit: Literal["block", "message"] = "block"
    ttl_grace_seconds: float = 0.0
    cross_ttl_reads: bool = True
    refresh: Literal["reached", "hit"] = "reached"
    min_cacheable_tokens: int | Mapping[str, int] | None = None
    minimum_applies_to: Literal["prefix", "segment"] = "prefix"
    settings_before_tools: bool | frozenset[str] = False
    retired_models: Literal["not_found", "serve"] = "not_found"
    availability: Literal["auto", "ttft", "immediate"] = "auto"
    auto_advance: bool = True
    sleep: bool = False
    latency_base_ms: float = 250.0
    latency_ms_per_uncached_token: float = 0.05
    latency_ms_per_cached_token: float = 0.002
    latency_ms_per_output_token: float = 12.0
    retry_after_ms: int | None = 10
    fault_seed: int = 0
    max_request_bytes: int = 32 * 1024 * 1024
    diagnostics_history: int = 10_000
    counter: TokenCounter | None = None
    tool_use_system_prompt: bool = True

    @classmethod
    def from_kwargs(cls, values: Mapping[str, Any]) -> SimSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(
                f"Unknown Simulator setting(s): {', '.join(unknown)}. "
                f"Known settings: {', '.join(sorted(known))}."
            )
        data = dict(values)
        before = data.get("settings_before_tools")
        if before is not None and not isinstance(before, bool):
            data["settings_before_tools"] = frozenset(before)
        settings = cls(**data)
        settings.check()
        return settings

    def check(self) -> None:
        if self.lookback < 1:
            raise ValueError(f"lookback must be at least 1; got {self.lookback}.")
        if self.lookback_unit not in ("block", "message"):
            raise ValueError(
                f"lookback_unit must be 'block' or 'message'; got {self.lookback_unit!r}."
            )
        if self.minimum_applies_to not in ("prefix", "segment"):
            raise ValueError(
                f"minimum_applies_to must be 'prefix' or 'segment'; got {self.minimum_applies_to!r}."
            )
        if self.retired_models not in ("not_found", "serve"):
            raise ValueError(
                f"retired_models must be 'not_found' or 'serve'; got {self.retired_models!r}."
            )
        if self.availability not in ("auto", "ttft", "immediate"):
            raise ValueError(
                f"availability must be 'auto', 'ttft' or 'immediate'; got {self.availability!r}."
            )
