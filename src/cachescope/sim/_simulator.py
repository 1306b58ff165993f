"""The simulator core: Anthropic's prompt cache as spec §8 models it, without any HTTP.

`Simulator.handle_messages(body, api_key)` answers a Messages request as the API would (the
Message JSON, or `APIErrorResponse`); `count_tokens` and `predict` share the same walk, so
`input + cache_creation + cache_read == count_tokens` holds on every response. The transports in
`_transport.py` put this behind the real `anthropic` SDK.

The rules, in the order they run (spec §1.5, §1.6, §3.4):
1. Each breakpoint opens a window of `lookback` positions, itself first; entries are looked up by
   cumulative prefix key. The longest live, available hit over all windows is A.
2. Every breakpoint beyond A whose prefix reaches the model's minimum writes one entry
   (expires at request start + TTL; readable once the response has started). The hit is
   refreshed: its expiry moves to this request's start + its TTL.
3. Usage: read = A; 1h write = B − A (B: last written 1h breakpoint); 5m write = C − B (C: last
   written breakpoint); input = total − max(A, C).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cachescope._modeldata import ModelInfo, ModelTable, default_table
from cachescope.sim import _responder
from cachescope.sim._clock import Clock, RealClock, VirtualClock, is_virtual, today_of
from cachescope.sim._errors import APIErrorResponse, invalid
from cachescope.sim._faults import Fault, FaultPlan
from cachescope.sim._plan import (
    _CONVERSATIONS,
    _EMPTY_SETTINGS,
    Memo,
    Plan,
    _message_segment,
    _Snapshot,
    _xxh64,
    plan,
)
from cachescope.sim._responder import (
    Reply,
    Responder,
    TextReply,
    ToolUseReply,
    as_reply,
    default_reply,
    estimated_output_tokens,
)
from cachescope.sim._settings import SimSettings
from cachescope.sim._simcore_py import native as _load_native
from cachescope.tokens import counter_for

_instances = itertools.count(1)


# One cache entry, the prefix ending at a breakpoint of an earlier request, as a plain tuple
# (the garbage collector stops tracking tuples of numbers):
#   (tokens, expires_at, available_at, ttl seconds)
_Entry = tuple[int, float, float, float]

# What diagnostics needs to remember about an answered message, as a plain tuple:
#   (model, level ends, level settings hashes, packed digests of every position,
#    last position this request left in the cache (-1: none), tokens up to it)
_Record = tuple[str, tuple[int, int, int], tuple[int, int, int], bytes, int, int]


class _Workspace:
    """The cache of one API key (the API isolates caches per workspace, spec §1.8)."""

    __slots__ = ("entries", "records")

    def __init__(self) -> None:
        self.entries: dict[int, _Entry] = {}
        self.records: OrderedDict[str, _Record] = OrderedDict()


@dataclass(slots=True)
class Outcome:
    """A handled Messages request: the Message JSON and its simulated timing."""

    message: dict[str, Any]
    ttft_ms: float
    total_ms: float


# The usage of one request, as a plain tuple:
#   (input tokens, cache read, 5m write, 1h write, hit position (-1: none),
#    writes as (position, ttl seconds), last position left in the cache (-1: none))
_Usage = tuple[int, int, int, int, int, list[tuple[int, float]], int]


class Simulator:
    """An offline Messages API with Anthropic's prompt cache, for the real `anthropic` SDK.

    Parameters
    ----------
    clock:
        A `VirtualClock` (or anything with `now()`); by default the real clock.
    models:
        The model table (`cachescope._modeldata.ModelTable`): known IDs and aliases, minimum
        cacheable lengths, tokenizer generations and retirement dates. Default: the shipped table.
    faults:
        A `Fault` or a list of them, injected by the HTTP transport.
    responder:
        A callable scripting replies (see `ScriptedResponder`); default: deterministic text.
    **settings:
        Any field of `SimSettings` (lookback, ttl_grace_seconds, cross_ttl_reads, ...).

    Examples
    --------
    >>> import anthropic
    >>> sim = Simulator(clock=VirtualClock())
    >>> client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    """

    def __init__(
        self,
        clock: Clock | None = None,
        models: ModelTable | None = None,
        faults: Iterable[Fault] | Fault | None = None,
        responder: Responder | None = None,
        **settings: Any,
    ) -> None:
        self.clock: Clock = clock if clock is not None else RealClock()
        self.models = models if models is not None else default_table()
        self.settings = SimSettings.from_kwargs(settings)
        self.responder = responder
        self.faults = FaultPlan(faults, self.settings.fault_seed)
        self._lock = threading.RLock()
        self._workspaces: dict[str, _Workspace] = {}
        self._memos: dict[str, Memo] = {}
        self._instance = next(_instances)
        self._ids = itertools.count(1)
        self._concurrent_depth = 0
        self._concurrent_longest = 0.0
        self._virtual = is_virtual(self.clock)
        availability = self.settings.availability
        if availability == "auto":
            availability = "ttft" if (self._virtual or self.settings.sleep) else "immediate"
        self._delay_availability = availability == "ttft"
        self._units = self.settings.lookback_unit == "message"
        self._id_prefix = f"msg_01Sim{self._instance:04d}"
        self._advance_each = (
            isinstance(self.clock, VirtualClock) and self._virtual and self.settings.auto_advance
        )
        # model name → (id, info), for models without a retirement date
        self._model_cache: dict[str, tuple[str, ModelInfo]] = {}
        self._model_cache_table: ModelTable | None = None
        self.requests = 0
        self._native = _load_native()
        # what the compiled whole-request path (`simcore.handle`) needs; see `_fast_learn`
        self._fast_config: tuple[Any, ...] | None = None

    # ---- public helpers --------------------------------------------------------------------

    def http_client(self, **kwargs: Any) -> Any:
        """An `httpx2.Client` (the client type the installed SDK accepts) on this simulator."""
        from cachescope.sim._transport import make_client

        return make_client(self, **kwargs)

    def async_http_client(self, **kwargs: Any) -> Any:
        """An `httpx2.AsyncClient` on this simulator."""
        from cachescope.sim._transport import make_async_client

        return make_async_client(self, **kwargs)

    @contextlib.contextmanager
    def concurrently(self) -> Iterator[None]:
        """Requests sent inside start at the same instant (a parallel fan-out).

        On a `VirtualClock` the clock does not move between them, so none can read what another
        writes (entries are readable only once the writing response has started); on leaving,
        the clock moves by the slowest response's time.
        """
        with self._lock:
            self._concurrent_depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._concurrent_depth -= 1
                if self._concurrent_depth == 0:
                    longest, self._concurrent_longest = self._concurrent_longest, 0.0
                    if self._virtual and self.settings.auto_advance and longest > 0:
                        self._advance(longest / 1000.0)

    def reset(self) -> None:
        """Forget every cache entry and remembered message (all workspaces)."""
        with self._lock:
            self._workspaces.clear()

    def cache_entries(self, api_key: str = "sim") -> int:
        """Number of live entries in a workspace's cache (for tests and notebooks)."""
        now = self.clock.now()
        grace = self.settings.ttl_grace_seconds
        workspace = self._workspaces.get(api_key)
        if workspace is None:
            return 0
        return sum(1 for e in workspace.entries.values() if now < e[1] + grace)

    # ---- the endpoints ---------------------------------------------------------------------

    def handle_messages(self, body: Mapping[str, Any], api_key: str = "sim") -> dict[str, Any]:
        """Answer `POST /v1/messages` (non-streaming form); raises `APIErrorResponse`."""
        native = self._native
        if native is not None:
            with self._lock:
                found = native.handle(self, body, api_key)
            if found is not None:
                return found[0]  # type: ignore[no-any-return]
            message = self._process(body, api_key).message
            self._fast_learn(body)
            return message
        return self._process(body, api_key).message

    def count_tokens(self, body: Mapping[str, Any], api_key: str = "sim") -> dict[str, Any]:
        """Answer `POST /v1/messages/count_tokens`: `{"input_tokens": n}`, no caching."""
        if not isinstance(body, Mapping):
            raise invalid("Request body must be a JSON object")
        model_id, info = self._model(body)
        request_plan = self._plan(body, model_id, info)
        return {"input_tokens": request_plan.total}

    def predict(self, body: Mapping[str, Any], api_key: str = "sim") -> dict[str, Any]:
        """The `usage` this request would get now (output tokens excluded), changing nothing."""
        with self._lock:
            model_id, info = self._model(body)
            self._check_message_params(body)
            request_plan = self._plan(body, model_id, info)
            workspace = self._workspaces.get(api_key) or _Workspace()
            usage = self._evaluate(request_plan, info, workspace, self.clock.now())
            return self._usage_json(usage, 0)

    def process(self, body: Mapping[str, Any], api_key: str = "sim") -> Outcome:
        """Handle a Messages request and return the Message JSON with its simulated timing."""
        native = self._native
        if native is not None:
            # The common request shape in one C call (`simcore.handle`, twin: `_process`); it
            # answers None, having changed nothing but memo tables, for anything else.
            with self._lock:
                found = native.handle(self, body, api_key)
            if found is not None:
                return Outcome(*found)
            outcome = self._process(body, api_key)
            self._fast_learn(body)
            return outcome
        return self._process(body, api_key)

    def _process(self, body: Mapping[str, Any], api_key: str) -> Outcome:
        """`process` in Python: every request shape, every error (the twin of simcore.handle)."""
        if body.__class__ is not dict and not isinstance(body, Mapping):
            raise invalid("Request body must be a JSON object")
        with self._lock:
            self.requests += 1
            start = self.clock.now()
            model_id, info = self._model(body)
            max_tokens = body.get("max_tokens")
            if max_tokens.__class__ is not int or max_tokens <= 0:
                max_tokens = self._check_message_params(body)
            request_plan = self._plan(body, model_id, info)
            workspace = self._workspaces.get(api_key)
            if workspace is None:
                workspace = self._workspaces[api_key] = _Workspace()
            usage = self._evaluate(request_plan, info, workspace, start)
            input_tokens, read, write_5m, write_1h, hit_position, writes, _ = usage

            # The reply (needed before the timing: output tokens feed the total time).
            reply_content, output_tokens, stop_reason = self._reply(body, request_plan, max_tokens)
            settings = self.settings
            ttft_ms = (
                settings.latency_base_ms
                + (input_tokens + write_5m + write_1h) * settings.latency_ms_per_uncached_token
                + read * settings.latency_ms_per_cached_token
            )
            total_ms = ttft_ms + output_tokens * settings.latency_ms_per_output_token

            # Commit: writes, refresh.
            entries = workspace.entries
            key = request_plan.key
            if hit_position >= 0:
                hit_key = key(hit_position)
                tokens, expires_at, available_at, ttl = entries[hit_key]
                expires = start + ttl
                if expires > expires_at:
                    entries[hit_key] = (tokens, expires, available_at, ttl)
                if settings.refresh == "reached":
                    # Entries the read prefix passes through are used too, so refreshed.
                    grace = settings.ttl_grace_seconds
                    for position, _ttl, _name in request_plan.breakpoints:
                        if position >= hit_position:
                            break
                        passed_key = key(position)
                        entry = entries.get(passed_key)
                        if entry is None:
                            continue
                        e_tokens, e_expires, e_available, e_ttl = entry
                        if e_available <= start < e_expires + grace and start + e_ttl > e_expires:
                            entries[passed_key] = (e_tokens, start + e_ttl, e_available, e_ttl)
            if writes:
                available_at = start + ttft_ms / 1000.0 if self._delay_availability else start
                cum = request_plan.cum
                for position, ttl in writes:
                    write_key = key(position)
                    old = entries.get(write_key)
                    if old is not None and start < old[1]:
                        entries[write_key] = (
                            old[0],
                            max(old[1], start + ttl),
                            old[2],
                            max(old[3], ttl),
                        )
                    else:
                        entries[write_key] = (cum[position], start + ttl, available_at, ttl)

            message_id = f"{self._id_prefix}{next(self._ids):014d}"
            message: dict[str, Any] = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model_id,
                "content": reply_content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": write_5m + write_1h,
                    "cache_read_input_tokens": read,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": write_5m,
                        "ephemeral_1h_input_tokens": write_1h,
                    },
                    "output_tokens": output_tokens,
                    "service_tier": "standard",
                },
            }
            diagnostics = body.get("diagnostics")
            if diagnostics is not None and (
                isinstance(diagnostics, Mapping) and "previous_message_id" in diagnostics
            ):
                message["diagnostics"] = self._diagnose(
                    workspace, diagnostics.get("previous_message_id"), request_plan, usage
                )
            self._remember(workspace, message_id, request_plan, usage)
            if self._concurrent_depth or not self._advance_each:
                self._after(total_ms)
            else:  # a virtual clock moved by each response's total time (the default there)
                self.clock.advance(total_ms / 1000.0)  # type: ignore[attr-defined]
            return Outcome(message, ttft_ms, total_ms)

    # ---- the compiled whole-request path ---------------------------------------------------

    def _fast_learn(self, body: Mapping[str, Any]) -> None:
        """After a request answered in Python: let `simcore.handle` answer its model next time.

        Keeps `_fast_config` current (rebuilt when the settings, model table or clock object
        changes) and adds the request's model to it once `_model` has cached it (a model with no
        retirement date), with its memo, minimum and settings seed.
        """
        with self._lock:
            config = self._fast_config
            if (
                config is None
                or config[0] is not self.settings
                or config[1] is not self.models
                or config[2] is not self.clock
            ):
                config = self._fast_config = self._make_fast_config()
            if len(config) == 3 or body.__class__ is not dict:
                return
            model = body.get("model")
            if model.__class__ is not str or model in config[3]:
                return
            if self._model_cache_table is not self.models:
                return
            found = self._model_cache.get(model)
            if found is None:
                return
            model_id, info = found
            tokenizer = "custom" if self.settings.counter is not None else info.tokenizer
            memo = self._memos.get(tokenizer)
            minimum = self._minimum(info)
            if memo is None or memo.native is None or minimum.__class__ is not int:
                return
            config[3][model] = (model_id, memo, minimum, memo.model_hash(model_id))

    def _make_fast_config(self) -> tuple[Any, ...]:
        """The settings `simcore.handle` reads (see its comment), or just the identity triple
        (settings, models, clock) when these settings need the Python path for every request."""
        settings = self.settings
        off = (settings, self.models, self.clock)
        native = self._native
        if native is None:
            return off
        clock_type = self.clock.__class__
        if clock_type is VirtualClock:
            clock_mode = 0
        elif clock_type is RealClock:
            clock_mode = 1
        else:
            return off
        latencies = (
            settings.latency_base_ms,
            settings.latency_ms_per_uncached_token,
            settings.latency_ms_per_cached_token,
            settings.latency_ms_per_output_token,
        )
        grace = settings.ttl_grace_seconds
        if (
            settings.lookback_unit != "block"
            or any(value.__class__ is not float for value in latencies)
            or grace.__class__ not in (float, int)
            or not -(2**52) <= grace <= 2**52
            or settings.lookback.__class__ is not int
            or settings.diagnostics_history.__class__ is not int
        ):
            return off
        words = _responder._WORDS
        if len(words) != 12 or any(
            native.default_reply(seed, words) != _responder.default_reply(seed)
            for seed in (0, 1, 0xFFFF_FFFF_FFFF_FFFF, 0x1234_5678_9ABC_DEF0)
        ):
            return off
        if self._advance_each:
            after_mode = 1
        elif (self._virtual and settings.auto_advance) or (not self._virtual and settings.sleep):
            after_mode = 2
        else:
            after_mode = 0
        return (
            settings,
            self.models,
            self.clock,
            {},
            self._workspaces,
            float(grace),
            settings.lookback,
            not settings.cross_ttl_reads,
            settings.refresh == "reached",
            settings.minimum_applies_to == "segment",
            *latencies,
            self._delay_availability,
            after_mode,
            self._id_prefix,
            self._ids,
            settings.diagnostics_history,
            words,
            _Snapshot,
            _message_segment,
            _CONVERSATIONS,
            _EMPTY_SETTINGS,
            clock_mode,
        )

    # ---- pieces ----------------------------------------------------------------------------

    def _after(self, total_ms: float) -> None:
        if self._concurrent_depth:
            self._concurrent_longest = max(self._concurrent_longest, total_ms)
            return
        if self._virtual:
            if self.settings.auto_advance:
                self._advance(total_ms / 1000.0)
        elif self.settings.sleep:
            time.sleep(total_ms / 1000.0)

    def _advance(self, seconds: float) -> None:
        clock = self.clock
        if isinstance(clock, VirtualClock):
            clock.advance(seconds)
        else:
            advance = getattr(clock, "advance", None)
            if callable(advance):
                advance(seconds)

    def _model(self, body: Mapping[str, Any]) -> tuple[str, ModelInfo]:
        model = body.get("model")
        if self._model_cache_table is self.models:
            found = self._model_cache.get(model) if model.__class__ is str else None
            if found is not None:
                return found
        else:
            self._model_cache = {}
            self._model_cache_table = self.models
        if model is None:
            raise invalid("model: Field required")
        if not isinstance(model, str):
            raise invalid("model: Input should be a valid string")
        info = self.models.lookup(model)
        if info is None:
            raise APIErrorResponse(404, f"model: {model}", "not_found_error")
        if info.retired is not None:
            if self.settings.retired_models == "not_found" and today_of(self.clock) >= info.retired:
                raise APIErrorResponse(404, f"model: {model}", "not_found_error")
        elif model.__class__ is str:
            self._model_cache[model] = (info.id, info)
        return info.id, info

    def _check_message_params(self, body: Mapping[str, Any]) -> int:
        if "max_tokens" not in body:
            raise invalid("max_tokens: Field required")
        max_tokens = body["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 0:
            raise invalid("max_tokens: Input should be greater than or equal to 0")
        if max_tokens == 0:
            # Pre-warming (spec §1.9) refuses these combinations.
            if body.get("stream"):
                raise invalid("max_tokens: 0 (cache pre-warming) cannot be used with stream: true")
            thinking = body.get("thinking")
            if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
                raise invalid(
                    "max_tokens: 0 (cache pre-warming) cannot be used with thinking enabled"
                )
            output_config = body.get("output_config")
            if isinstance(output_config, Mapping) and output_config.get("format") is not None:
                raise invalid(
                    "max_tokens: 0 (cache pre-warming) cannot be used with output_config.format"
                )
            tool_choice = body.get("tool_choice")
            if isinstance(tool_choice, Mapping) and tool_choice.get("type") in ("any", "tool"):
                raise invalid(
                    "max_tokens: 0 (cache pre-warming) cannot be used with tool_choice "
                    f"type '{tool_choice.get('type')}'"
                )
        return max_tokens

    def _plan(self, body: Mapping[str, Any], model_id: str, info: ModelInfo) -> Plan:
        counter = self.settings.counter
        tokenizer = "custom" if counter is not None else info.tokenizer
        memo = self._memos.get(tokenizer)
        if memo is None:
            memo = self._memos[tokenizer] = Memo(counter or counter_for(info.tokenizer))
        before = self.settings.settings_before_tools
        return plan(
            body,
            memo,
            model_id,
            settings_before_tools=before if isinstance(before, bool) else model_id in before,
            count_messages_as_units=self._units,
        )

    def _minimum(self, info: ModelInfo) -> int:
        override = self.settings.min_cacheable_tokens
        if override is None:
            return info.min_cacheable_tokens
        if isinstance(override, int):
            return override
        return int(override.get(info.id, info.min_cacheable_tokens))

    def _evaluate(
        self, request_plan: Plan, info: ModelInfo, workspace: _Workspace, now: float
    ) -> _Usage:
        settings = self.settings
        cum = request_plan.cum
        breakpoints = request_plan.breakpoints
        entries = workspace.entries

        # 1. Reads: one window per breakpoint, the last breakpoint first; longest hit wins.
        best = -1
        if entries and breakpoints:
            tools_end, system_end, _ = request_plan.level_ends
            arguments = (
                request_plan.keyed(),
                breakpoints,
                request_plan.message_units,
                tools_end,
                system_end,
                entries,
                now,
                settings.ttl_grace_seconds,
                settings.lookback,
                not settings.cross_ttl_reads,
                request_plan._keys,
            )
            native = self._native
            best = native.lookback(*arguments) if native is not None else -2
            if best == -2:  # no C core, or numbers it cannot compare exactly
                best = lookback(*arguments)
        read = cum[best] if best >= 0 else 0

        # 2. Writes: breakpoints beyond the hit, at or above the minimum.
        minimum = self._minimum(info)
        segment = settings.minimum_applies_to == "segment"
        writes: list[tuple[int, float]] = []
        b_tokens = c_tokens = read
        previous_tokens = 0
        for position, ttl, name in breakpoints:
            tokens = cum[position]
            length = tokens - previous_tokens if segment else tokens
            previous_tokens = tokens
            if position <= best or length < minimum or tokens <= 0:
                continue
            writes.append((position, ttl))
            c_tokens = tokens
            if name == "1h":
                b_tokens = tokens
        # TTL order is validated (1h before 5m), so B ≤ C.
        return (
            request_plan.total - max(read, c_tokens),
            read,
            c_tokens - b_tokens,
            b_tokens - read,
            best,
            writes,
            writes[-1][0] if writes else best,
        )

    @staticmethod
    def _usage_json(usage: _Usage, output_tokens: int) -> dict[str, Any]:
        input_tokens, read, write_5m, write_1h, _, _, _ = usage
        return {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": write_5m + write_1h,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": write_5m,
                "ephemeral_1h_input_tokens": write_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _reply(
        self, body: Mapping[str, Any], request_plan: Plan, max_tokens: int
    ) -> tuple[list[dict[str, Any]], int, str]:
        if max_tokens == 0:
            return [], 0, "max_tokens"
        if self.responder is None:
            positions = request_plan.level_ends[2]
            seed = request_plan.key(positions - 1) if positions else 0
            text, tokens = default_reply(seed)
            if tokens > max_tokens:
                return [{"type": "text", "text": text}], max_tokens, "max_tokens"
            return [{"type": "text", "text": text}], tokens, "end_turn"
        reply: Reply = as_reply(self.responder(body))
        content: list[dict[str, Any]] = []
        has_tool = False
        for block in reply.content:
            if isinstance(block, TextReply):
                content.append({"type": "text", "text": block.text})
            elif isinstance(block, ToolUseReply):
                has_tool = True
                tool_id = block.id or f"toolu_01Sim{self._instance:04d}{next(self._ids):014d}"
                content.append(
                    {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": block.name,
                        "input": dict(block.input),
                    }
                )
        tokens = estimated_output_tokens(reply)
        stop_reason = reply.stop_reason or ("tool_use" if has_tool else "end_turn")
        if tokens > max_tokens:
            return content, max_tokens, "max_tokens"
        return content, tokens, stop_reason

    def _remember(
        self, workspace: _Workspace, message_id: str, request_plan: Plan, usage: _Usage
    ) -> None:
        position = usage[6]
        tokens = request_plan.cum[position] if position >= 0 else 0
        records = workspace.records
        records[message_id] = (
            request_plan.model,
            request_plan.level_ends,
            request_plan.level_seeds,
            b"".join(request_plan.packed),
            position,
            tokens,
        )
        if len(records) > self.settings.diagnostics_history:
            records.popitem(last=False)

    def _diagnose(
        self,
        workspace: _Workspace,
        previous_id: Any,
        request_plan: Plan,
        usage: _Usage,
    ) -> dict[str, Any] | None:
        """`diagnostics` for a response (spec §1.9 / CD): why the previous prefix was not reused."""
        if previous_id is None:
            return None
        record = workspace.records.get(str(previous_id))
        if record is None:
            return {"cache_miss_reason": {"type": "previous_message_not_found"}}
        model, old_ends, old_seeds, old_digests, cached_position, cached_tokens = record
        missed = max(0, cached_tokens - usage[1])
        if missed == 0:
            return None
        if model != request_plan.model:
            return _reason("model_changed", missed)
        new_ends = request_plan.level_ends
        new_seeds = request_plan.level_seeds
        new_digests = b"".join(request_plan.packed)
        level_names = ("tools_changed", "system_changed", "messages_changed")
        start_old = start_new = 0
        for level in range(3):
            end_old = old_ends[level]
            end_new = new_ends[level]
            if start_old > cached_position:
                break
            if old_seeds[level] != new_seeds[level]:
                # A request-level setting changed: tools/system settings show as that level;
                # messages-level settings (tool_choice, thinking, ...) are "unavailable" (CD).
                if level == 2:
                    return {"cache_miss_reason": {"type": "unavailable"}}
                return _reason(level_names[level], missed)
            # digests are 8-byte words: compare the byte ranges of the positions
            a = old_digests[start_old * 8 : end_old * 8]
            b = new_digests[start_new * 8 : end_new * 8]
            if level < 2:
                if a != b:
                    return _reason(level_names[level], missed)
            else:
                cached_here = (cached_position - start_old + 1) * 8
                if b[:cached_here] != a[:cached_here]:
                    return _reason(level_names[level], missed)
            start_old, start_new = end_old, end_new
        return {"cache_miss_reason": {"type": "unavailable"}}


def lookback(
    keyed: bytes,
    breakpoints: list[tuple[int, float, str]],
    units: list[int] | None,
    tools_end: int,
    system_end: int,
    entries: dict[int, _Entry],
    now: float,
    grace: float,
    window: int,
    same_ttl_only: bool,
    keys: dict[int, int],
) -> int:
    """The longest read hit over the breakpoints' windows, -1 for none (twin of simcore.lookback).

    One window of `window` positions (or messages, with `units`) per breakpoint, the last
    breakpoint first; a position hits when its prefix key — the xxh3 of the keyed digests up to
    it, cached in `keys` — names a live, available entry (of the same TTL with `same_ttl_only`).
    """
    best = -1
    get = entries.get
    for position, ttl, _name in reversed(breakpoints):
        if position <= best:
            break
        p = position
        top_unit = 0
        if units is None:
            stop = max(best, position - window)
        else:
            stop = best
            top_unit = units[position]
        while p > stop:
            if units is not None and top_unit - units[p] >= window:
                break
            key = keys.get(p)
            if key is None:
                index = p + 2 + (p >= tools_end) + (p >= system_end)
                key = keys[p] = _xxh64(keyed[: index * 8])
            entry = get(key)
            if (
                entry is not None
                and entry[2] <= now
                and now < entry[1] + grace
                and (not same_ttl_only or entry[3] == ttl)
            ):
                best = p
                break
            p -= 1
    return best


def _reason(kind: str, missed: int) -> dict[str, Any]:
    return {"cache_miss_reason": {"type": kind, "cache_missed_input_tokens": missed}}
