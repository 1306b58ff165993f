"""The simulator as an HTTP transport for the real `anthropic` SDK (no sockets).

The installed SDK (2.x) builds on `httpx2` and only accepts an `httpx2.Client` /
`httpx2.AsyncClient` as `http_client=`; this module gives it one whose transport routes
`POST /v1/messages` (plain JSON or SSE) and `POST /v1/messages/count_tokens` into the `Simulator`,
injects faults, and adds the headers every simulated response carries (`request-id`,
`x-cachescope-simulator`, `x-cachescope-ttft-ms`, `x-cachescope-total-ms`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx2
import orjson

from cachescope.sim._errors import APIErrorResponse
from cachescope.sim._faults import MESSAGE_OF, STATUS_OF, Fault

if TYPE_CHECKING:
    from cachescope.sim._simulator import Outcome, Simulator

BASE_URL = "https://api.anthropic.com"
_request_ids = itertools.count(1)


def _request_id() -> str:
    return f"req_01Sim{next(_request_ids):018d}"


def _json_response(
    status: int, payload: Any, request_id: str, extra: Mapping[str, str] | None = None
) -> httpx2.Response:
    headers = {
        "content-type": "application/json",
        "request-id": request_id,
        "x-cachescope-simulator": "1",
    }
    if extra:
        headers.update(extra)
    return httpx2.Response(status, headers=headers, content=orjson.dumps(payload))


def _error_response(error: APIErrorResponse, request_id: str) -> httpx2.Response:
    return _json_response(error.status, error.body(request_id), request_id, error.headers)


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _chunks(text: str, pieces: int = 3) -> list[str]:
    if len(text) < 8:
        return [text]
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse_events(message: Mapping[str, Any]) -> list[bytes]:
    """The SSE byte chunks of a streamed Message (spec §3.3): cumulative usage on message_delta."""
    usage = message["usage"]
    start = dict(message)
    start["content"] = []
    start["stop_reason"] = None
    start_usage = dict(usage)
    start_usage["output_tokens"] = min(1, usage["output_tokens"])
    start["usage"] = start_usage
    events = [_sse("message_start", {"type": "message_start", "message": start})]
    events.append(_sse("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            for piece in _chunks(block["text"]):
                events.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                )
        else:
            opening = dict(block)
            opening["input"] = {}
            events.append(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                )
            )
            events.append(
                _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": orjson.dumps(block["input"]).decode(),
                        },
                    },
                )
            )
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {
                    "input_tokens": usage["input_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                    "output_tokens": usage["output_tokens"],
                },
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


def _dropped(request: httpx2.Request) -> httpx2.RemoteProtocolError:
    return httpx2.RemoteProtocolError(
        "peer closed connection without sending complete message body (simulated by cachescope)",
        request=request,
    )


class _EventStream(httpx2.SyncByteStream):
    def __init__(self, events: list[bytes], cut_after: int | None, request: httpx2.Request) -> None:
        self.events = events
        self.cut_after = cut_after
        self.request = request

    def __iter__(self) -> Iterator[bytes]:
        for number, chunk in enumerate(self.events):
            if self.cut_after is not None and number >= self.cut_after:
                raise _dropped(self.request)
            yield chunk


class _AsyncEventStream(httpx2.AsyncByteStream):
    def __init__(self, events: list[bytes], cut_after: int | None, request: httpx2.Request) -> None:
        self.events = events
        self.cut_after = cut_after
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for number, chunk in enumerate(self.events):
            if self.cut_after is not None and number >= self.cut_after:
                raise _dropped(self.request)
            yield chunk


class _Prepared:
    """The result of routing one request: a response, or events to stream, or a fault to raise."""

    __slots__ = ("cut_after", "delay", "events", "raise_exc", "response", "status_headers")

    def __init__(self) -> None:
        self.response: httpx2.Response | None = None
        self.events: list[bytes] | None = None
        self.cut_after: int | None = None
        self.status_headers: dict[str, str] = {}
        self.raise_exc: Exception | None = None
        self.delay = 0.0


def _fault_response(sim: Simulator, fault: Fault, request_id: str) -> httpx2.Response:
    status = STATUS_OF[fault.kind]
    headers: dict[str, str] = {}
    retry_after_ms = (
        fault.retry_after_ms if fault.retry_after_ms is not None else sim.settings.retry_after_ms
    )
    if status == 429:
        headers["retry-after"] = str(max(1, -(-(retry_after_ms or 1000) // 1000)))
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    error = APIErrorResponse(status, MESSAGE_OF[fault.kind], headers=headers)
    return _error_response(error, request_id)


def _api_key(request: httpx2.Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def prepare(sim: Simulator, request: httpx2.Request) -> _Prepared:
    """Route one HTTP request through faults and the simulator core."""
    prepared = _Prepared()
    request_id = _request_id()
    path = request.url.path.rstrip("/")
    if request.method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
        prepared.response = _error_response(
            APIErrorResponse(404, f"Not Found: {request.method} {path}", "not_found_error"),
            request_id,
        )
        return prepared
    endpoint = "count_tokens" if path.endswith("count_tokens") else "messages"
    with sim._lock:
        fault = sim.faults.next(endpoint)
    if fault is not None:
        if fault.kind in STATUS_OF:
            prepared.response = _fault_response(sim, fault, request_id)
            return prepared
        if fault.kind == "timeout":
            prepared.raise_exc = httpx2.ReadTimeout(
                "Read timed out (simulated by cachescope)", request=request
            )
            return prepared
        if fault.kind == "disconnect":
            prepared.raise_exc = httpx2.RemoteProtocolError(
                "Server disconnected without sending a response (simulated by cachescope).",
                request=request,
            )
            return prepared
    content = request.content
    try:
        if len(content) > sim.settings.max_request_bytes:
            raise APIErrorResponse(
                413,
                "Request exceeds the maximum allowed number of bytes. The maximum request size is "
                f"{sim.settings.max_request_bytes // (1024 * 1024)} MB.",
                "request_too_large",
            )
        api_key = _api_key(request)
        if api_key is None:
            raise APIErrorResponse(401, "x-api-key header is required", "authentication_error")
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise APIErrorResponse(400, f"There was an error parsing the body: {exc}") from None
        if not isinstance(body, dict):
            raise APIErrorResponse(400, "Request body must be a JSON object")
        if endpoint == "count_tokens":
            prepared.response = _json_response(200, sim.count_tokens(body, api_key), request_id)
            return prepared
        outcome: Outcome = sim._process(body, api_key, True)  # the body is ours alone
    except APIErrorResponse as error:
        prepared.response = _error_response(error, request_id)
        return prepared
    headers = {
        "request-id": request_id,
        "x-cachescope-simulator": "1",
        "x-cachescope-ttft-ms": f"{outcome.ttft_ms:.1f}",
        "x-cachescope-total-ms": f"{outcome.total_ms:.1f}",
    }
    if not sim._virtual and sim.settings.sleep:
        prepared.delay = outcome.total_ms / 1000.0
    if body.get("stream"):
        events = sse_events(outcome.message)
        if fault is not None and fault.kind == "stream_disconnect":
            prepared.cut_after = 3  # message_start, ping, first block start
        elif fault is not None and fault.kind == "stream_overloaded":
            events = [
                *events[:2],
                _sse(
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                ),
            ]
        headers["content-type"] = "text/event-stream; charset=utf-8"
        headers["cache-control"] = "no-cache"
        prepared.events = events
        prepared.status_headers = headers
        return prepared
    if fault is not None and fault.kind == "stream_disconnect":
        # A non-streaming request cannot be cut mid-stream: the connection drops instead, after
        # the request was processed (its cache writes stand).
        prepared.raise_exc = httpx2.RemoteProtocolError(
            "Server disconnected without sending a response (simulated by cachescope).",
            request=request,
        )
        return prepared
    headers["content-type"] = "application/json"
    prepared.response = httpx2.Response(200, headers=headers, content=orjson.dumps(outcome.message))
    return prepared


class SimTransport(httpx2.BaseTransport):
    """Synchronous transport answering from a `Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        prepared = prepare(self.sim, request)
        if prepared.raise_exc is not None:
            raise prepared.raise_exc
        # The real clock without `sleep` answers at once; with `sleep`, the simulated time
        # passes before the answer (never on a VirtualClock: `delay` stays 0 there).
        if prepared.delay:
            time.sleep(prepared.delay)
        if prepared.response is not None:
            return prepared.response
        assert prepared.events is not None
        return httpx2.Response(
            200,
            headers=prepared.status_headers,
            stream=_EventStream(prepared.events, prepared.cut_after, request),
        )


class AsyncSimTransport(httpx2.AsyncBaseTransport):
    """Asynchronous transport answering from a `Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        prepared = prepare(self.sim, request)
        if prepared.raise_exc is not None:
            raise prepared.raise_exc
        if prepared.delay:
            await asyncio.sleep(prepared.delay)
        if prepared.response is not None:
            return prepared.response
        assert prepared.events is not None
        return httpx2.Response(
            200,
            headers=prepared.status_headers,
            stream=_AsyncEventStream(prepared.events, prepared.cut_after, request),
        )


def make_client(sim: Simulator, **kwargs: Any) -> httpx2.Client:
    kwargs.setdefault("base_url", BASE_URL)
    return httpx2.Client(transport=SimTransport(sim), **kwargs)


def make_async_client(sim: Simulator, **kwargs: Any) -> httpx2.AsyncClient:
    kwargs.setdefault("base_url", BASE_URL)
    return httpx2.AsyncClient(transport=AsyncSimTransport(sim), **kwargs)
