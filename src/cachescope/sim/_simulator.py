"""The simulator: the Messages API endpoints over the prompt cache, without any HTTP.

`Simulator.handle_messages(body, api_key)` answers a Messages request as the API would (the
Message JSON, or `APIErrorResponse`); `count_tokens` and `predict` read the request the same way,
so `input + cache_creation + cache_read == count_tokens` holds on every response. The transports
in `_transport.py` put this behind the real `anthropic` SDK; the cache rules are in `_cache.py`.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cachescope._modeldata import ModelInfo, ModelTable, default_table
from cachescope.sim._cache import Usage, Workspace
from cachescope.sim._clock import Clock, RealClock, VirtualClock, is_virtual, today_of
from cachescope.sim._errors import APIErrorResponse, invalid
from cachescope.sim._faults import Fault, FaultPlan
from cachescope.sim._request import CacheRequest, read_request
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
from cachescope.sim._validate import Validator, check_max_tokens
from cachescope.tokens import counter_for

_instances = itertools.count(1)


@dataclass(slots=True)
class Outcome:
    """A handled Messages request: the Message JSON and its simulated timing."""

    message: dict[str, Any]
    ttft_ms: float
    total_ms: float


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
        self._workspaces: dict[str, Workspace] = {}
        # token counts of a plugged-in counter (`SimSettings.counter`), by content hash
        self._validator = Validator()
        self._instance = next(_instances)
        self._ids = itertools.count(1)
        self._concurrent_depth = 0
        self._concurrent_longest = 0.0
        self._virtual = is_virtual(self.clock)
        availability = self.settings.availability
        if availability == "auto":
            availability = "ttft" if (self._virtual or self.settings.sleep) else "immediate"
        self._delay_availability = availability == "ttft"
        self._id_prefix = f"msg_01Sim{self._instance:04d}"
        self._advance_each = (
            isinstance(self.clock, VirtualClock) and self._virtual and self.settings.auto_advance
        )
        # model name → (id, info), for models without a retirement date
        self._model_cache: dict[str, tuple[str, ModelInfo]] = {}
        self._model_cache_table: ModelTable | None = None
        self.requests = 0

    # ---- public helpers --------------------------------------------------------------------

    def http_client(self, **kwargs: Any) -> Any:
        """An `httpx2.Client` (the client type the installed SDK accepts) on this simulator."""
        from cachescope.sim._transport import make_client

        return make_client(self, **kwargs)

    def async_http_client(self, **kwargs: Any) -> Any:
        """An `httpx2.AsyncClient` on this simulator."""
        from cachescope.sim._transport import make_async_client

        return make_async_client(self, **kwargs)

    def transport(self) -> Any:
        """The simulator as an `httpx2` transport, to wrap (a recorder) or to build a client on."""
        from cachescope.sim._transport import SimTransport

        return SimTransport(self)

    def async_transport(self) -> Any:
        """The simulator as an async `httpx2` transport."""
        from cachescope.sim._transport import AsyncSimTransport

        return AsyncSimTransport(self)

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
            self._validator = Validator()

    def cache_entries(self, api_key: str = "sim") -> int:
        """Number of live entries in a workspace's cache (for tests and notebooks)."""
        now = self.clock.now()
        grace = self.settings.ttl_grace_seconds
        workspace = self._workspaces.get(api_key)
        if workspace is None:
            return 0
        return workspace.live_entries(now, grace)

    # ---- the endpoints ---------------------------------------------------------------------

    def handle_messages(self, body: Mapping[str, Any], api_key: str = "sim") -> dict[str, Any]:
        """Answer `POST /v1/messages` (non-streaming form); raises `APIErrorResponse`."""
        return self.process(body, api_key).message

    def count_tokens(self, body: Mapping[str, Any], api_key: str = "sim") -> dict[str, Any]:
        """Answer `POST /v1/messages/count_tokens`: `{"input_tokens": n}`, no caching."""
        if not isinstance(body, Mapping):
            raise invalid("Request body must be a JSON object")
        with self._lock:  # the validator's memo is shared with `process`
            model_id, info = self._model(body)
            return {"input_tokens": self._read(body, model_id, info).total}

    def predict(self, body: Mapping[str, Any], api_key: str = "sim") -> dict[str, Any]:
        """The `usage` this request would get now (output tokens excluded), changing nothing."""
        with self._lock:
            model_id, info = self._model(body)
            check_max_tokens(body)
            request = self._read(body, model_id, info)
            workspace = self._workspaces.get(api_key) or Workspace()
            usage = workspace.evaluate(
                request, self._minimum(info), self.settings, self.clock.now()
            )
            return self._usage_json(usage, 0)

    def process(self, body: Mapping[str, Any], api_key: str = "sim") -> Outcome:
        """Handle a Messages request and return the Message JSON with its simulated timing."""
        return self._process(body, api_key, False)

    def _process(self, body: Mapping[str, Any], api_key: str, owned: bool) -> Outcome:
        """`process`; `owned`: nobody else holds the body (the transport parsed it), so its
        messages may be remembered as accepted."""
        if body.__class__ is not dict and not isinstance(body, Mapping):
            raise invalid("Request body must be a JSON object")
        with self._lock:
            self.requests += 1
            start = self.clock.now()
            model_id, info = self._model(body)
            max_tokens = body.get("max_tokens")
            if max_tokens.__class__ is not int or max_tokens <= 0:
                max_tokens = check_max_tokens(body)
            request = self._read(body, model_id, info, owned)
            workspace = self._workspaces.get(api_key)
            if workspace is None:
                workspace = self._workspaces[api_key] = Workspace()
            settings = self.settings
            usage = workspace.evaluate(request, self._minimum(info), settings, start)
            input_tokens, read, write_5m, write_1h, _, _, _ = usage

            # The reply (needed before the timing: output tokens feed the total time).
            reply_content, output_tokens, stop_reason = self._reply(body, request, max_tokens)
            ttft_ms = (
                settings.latency_base_ms
                + (input_tokens + write_5m + write_1h) * settings.latency_ms_per_uncached_token
                + read * settings.latency_ms_per_cached_token
            )
            total_ms = ttft_ms + output_tokens * settings.latency_ms_per_output_token
            available_at = start + ttft_ms / 1000.0 if self._delay_availability else start
            workspace.commit(request, usage, settings, start, available_at)

            message_id = f"{self._id_prefix}{next(self._ids):014d}"
            message: dict[str, Any] = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model_id,
                "content": reply_content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": self._usage_json(usage, output_tokens),
            }
            diagnostics = body.get("diagnostics")
            if diagnostics is not None and (
                isinstance(diagnostics, Mapping) and "previous_message_id" in diagnostics
            ):
                message["diagnostics"] = workspace.diagnose(
                    diagnostics.get("previous_message_id"), request, usage
                )
            workspace.remember(message_id, request, usage, settings.diagnostics_history)
            if self._concurrent_depth or not self._advance_each:
                self._after(total_ms)
            else:  # a virtual clock moved by each response's total time (the default there)
                self.clock.advance(total_ms / 1000.0)  # type: ignore[attr-defined]
            return Outcome(message, ttft_ms, total_ms)

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

    def _read(
        self, body: Mapping[str, Any], model_id: str, info: ModelInfo, owned: bool = False
    ) -> CacheRequest:
        """Validate a request body and read it as cache positions."""
        self._validator.validate(body, remember=owned)
        before = self.settings.settings_before_tools
        return read_request(
            body,
            model_id,
            self.settings.counter or counter_for(info.tokenizer),
            tool_use_prompt=self.settings.tool_use_system_prompt,
            settings_before_tools=before if isinstance(before, bool) else model_id in before,
        )

    def _minimum(self, info: ModelInfo) -> int:
        override = self.settings.min_cacheable_tokens
        if override is None:
            return info.min_cacheable_tokens
        if isinstance(override, int):
            return override
        return int(override.get(info.id, info.min_cacheable_tokens))

    @staticmethod
    def _usage_json(usage: Usage, output_tokens: int) -> dict[str, Any]:
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
        self, body: Mapping[str, Any], request: CacheRequest, max_tokens: int
    ) -> tuple[list[dict[str, Any]], int, str]:
        if max_tokens == 0:
            return [], 0, "max_tokens"
        if self.responder is None:
            seed = request.keys[-1] if request.keys else 0
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
