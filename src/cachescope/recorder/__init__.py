"""The transport seam: every Messages API call that passes an httpx transport, as a `CallRecord`.

A `Recorder` wraps any `httpx2` transport (sync or async) under the `anthropic` SDK. For each
`POST …/v1/messages` it reads the request JSON going out and the response coming back — the JSON
body, or the SSE stream as the SDK consumes it — and appends one record per logical call to its
ledger. Bytes, timing, types and exceptions reach the SDK unchanged; nothing of the SDK's own
internals is touched, and request headers are never kept (no API key reaches a record).
`count_tokens` and every other endpoint pass through unrecorded.

>>> recorder = Recorder(ledger)
>>> http = httpx2.Client(transport=recorder.wrap_transport(httpx2.HTTPTransport()))
>>> client = anthropic.Anthropic(http_client=http)      # every messages call recorded

`recording_http_client(recorder)` builds such a client on the SDK's default one. A caller that
knows more about a call — its session, its params with layer names — opens a `CallScope` around
it (`with recorder.call(session="aura", params=params): ...`); `CachingClient` does so. The
params then stand in for the request JSON (they are what the SDK encodes, and parsing 400 KB of
JSON again would cost more than the rest of the record). Only `POST …/v1/messages` is recorded:
Bedrock and Vertex URL shapes pass through like every other request.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, overload

import anthropic
import httpx2
import orjson

from cachescope.ledger import CallRecord, Ledger, LedgerError, format_time
from cachescope.recorder._call import HELD, Call
from cachescope.recorder._fill import EntryMemo, fingerprint
from cachescope.recorder._observe import AsyncObservedStream, ObservedStream

__all__ = [
    "DIAGNOSTICS_BETA",
    "AsyncRecordingTransport",
    "CallScope",
    "Recorder",
    "RecordingTransport",
    "recording_http_client",
]

logger = logging.getLogger("cachescope")

DIAGNOSTICS_BETA = "cache-diagnosis-2026-04-07"
_RETRY_HEADER = "x-stainless-retry-count"
_UNSET: Any = object()

# The call scope open in this thread or task, and the last call sent here outside any scope (the
# SDK's retry loop runs in its caller's thread or task: a new call here ends the last one).
_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "cachescope_call_scope", default=None
)
_last_call: contextvars.ContextVar[weakref.ref[Call] | None] = contextvars.ContextVar(
    "cachescope_last_call", default=None
)


def _is_messages(request: httpx2.Request) -> bool:
    return request.method == "POST" and request.url.path.rstrip("/").endswith("/v1/messages")


class CallScope:
    """One call as its caller knows it: the session it belongs to, and optionally its params.

    Attempts sent while the scope is active belong to one record. A failure is written when the
    scope closes, with the exception the caller got (its type names the record's `error_type`).
    `params` (the keyword arguments of `messages.create`) are fingerprinted instead of the wire
    JSON: they are what went out, and they keep the layer names of a rendered `Prompt`.

    Attributes
    ----------
    record:
        The record of the scope's last call, once written (None before).
    """

    def __init__(
        self,
        recorder: Recorder,
        session: str | None,
        params: Mapping[str, Any] | None,
        stream: bool | None,
    ) -> None:
        self.recorder = recorder
        self.session = session
        self.params = params
        self.stream = stream
        self.record: CallRecord | None = None
        self.call: Call | None = None  # the last call sent in the scope
        self._calls: list[Call] = []
        self.closed = False
        self.recorder_error: BaseException | None = None
        self._token: contextvars.Token[CallScope | None] | None = None

    def activate(self) -> contextvars.Token[CallScope | None]:
        """Make this the scope of the calls sent from here on (in this thread or task)."""
        return _scope.set(self)

    def deactivate(self, token: contextvars.Token[CallScope | None]) -> None:
        _scope.reset(token)

    def close(self, error: BaseException | None = None) -> None:
        """The caller's call returned, or raised `error`."""
        self.closed = True
        for call in self._calls:
            call.scope_closed(error)

    def raise_recorder_error(self, message: Any = None) -> None:
        """Raise what kept a successful call from its record (a `LedgerError`), once."""
        error, self.recorder_error = self.recorder_error, None
        if error is None:
            return
        if message is not None and hasattr(error, "message"):
            error.message = message
        raise error

    def __enter__(self) -> CallScope:
        self._token = self.activate()
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if self._token is not None:
            self.deactivate(self._token)
            self._token = None
        self.close(None if isinstance(error, GeneratorExit) else error)


class Recorder:
    """Records the Messages API calls that pass the transports it wraps.

    Parameters
    ----------
    ledger:
        Where records go (a new in-memory `Ledger` by default).
    session:
        The session of calls made outside a `CallScope` that names one.
    backend:
        "sim" or "anthropic" for every record; by default each record says "sim" when the
        response came from the cachescope simulator, else "anthropic".
    clock:
        Stamps records (anything with `.now()` in epoch seconds; the wall clock by default).
    store_text:
        Keep each block's prompt text in the record's fingerprint (default False: hashes only).
    diagnostics:
        Add `diagnostics.previous_message_id` to each request that has none (the last message of
        the same session), with the beta header, so the API reports why a cache missed. Off by
        default: the recorder then only watches.
    max_retries:
        The retry budget of the clients recorded (the SDK's `max_retries`, 2 by default). A
        retryable failure of a call outside a scope is final once this many retries are spent.
    on_record:
        Called with each record after it reached the ledger.
    """

    def __init__(
        self,
        ledger: Ledger | None = None,
        *,
        session: str | None = None,
        backend: str | None = None,
        clock: Any = None,
        store_text: bool = False,
        diagnostics: bool = False,
        max_retries: int = anthropic.DEFAULT_MAX_RETRIES,
        on_record: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self.ledger = ledger if ledger is not None else Ledger()
        self.session = session
        self.backend = backend
        self.clock = clock
        self.store_text = store_text
        self.diagnostics = diagnostics
        self.max_retries = max_retries
        self.on_record = on_record
        self._chain: dict[str | None, str | None] = {}
        self._lock = threading.Lock()
        self._held: set[Call] = set()
        self._entries: EntryMemo = {}

    def __repr__(self) -> str:
        return f"Recorder(ledger={self.ledger!r}, session={self.session!r})"

    # -- public -------------------------------------------------------------------------------------

    @overload
    def wrap_transport(self, transport: httpx2.AsyncBaseTransport) -> AsyncRecordingTransport: ...
    @overload
    def wrap_transport(self, transport: httpx2.BaseTransport) -> RecordingTransport: ...
    def wrap_transport(self, transport: Any) -> Any:
        """`transport`, recorded: a sync transport gives a `RecordingTransport`, an async one an
        `AsyncRecordingTransport`."""
        if isinstance(transport, httpx2.AsyncBaseTransport):
            return AsyncRecordingTransport(self, transport)
        return RecordingTransport(self, transport)

    def call(
        self,
        *,
        session: str | None = _UNSET,
        params: Mapping[str, Any] | None = None,
        stream: bool | None = None,
    ) -> CallScope:
        """A scope for one call (see `CallScope`); `session` defaults to the recorder's."""
        return CallScope(self, self.session if session is _UNSET else session, params, stream)

    def previous_message_id(self, session: str | None = None) -> str | None:
        """The id of `session`'s last successful message (what `diagnostics` chains to)."""
        with self._lock:
            return self._chain.get(session)

    def reset_chain(self, session: str | None = None) -> None:
        """Forget `session`'s last message: its next call is sent as a first call."""
        with self._lock:
            self._chain.pop(session, None)

    def flush(self, owner: Any = None) -> None:
        """Write the held failures (of the transport `owner` only, when given): no retry of
        them will come."""
        with self._lock:
            calls = [call for call in self._held if owner is None or call.owner is owner]
        for call in calls:
            call.flush()

    # -- what the transports call ---------------------------------------------------------------

    def begin(self, request: httpx2.Request, owner: Any) -> tuple[Call, httpx2.Request]:
        """The call an attempt belongs to (a new one or a retry), and the request to send."""
        scope = _scope.get()
        call: Call | None = None
        retry_count = 0
        if scope is not None and scope.recorder is self:
            call = scope.call
            if call is not None and call.state == HELD:
                retry_count = _retry_count(request)
                if not retry_count:  # not a retry: the held failure was the caller's last word
                    call.flush()
                    call = None
            else:
                call = None  # the scope's first call, or a further one
        else:
            scope = None
            retry_count = _retry_count(request)
            last_ref = _last_call.get()
            last = last_ref() if last_ref is not None else None  # held calls are kept by `_held`
            if last is not None and last.state == HELD:
                if retry_count and last.recorder is self:
                    call = last
                else:
                    last.flush()  # a new call in this thread or task: the SDK gave the last up
        if call is None:
            call, request = self._new_call(request, scope, owner)
        elif call.diagnostics_previous is not _UNSET:
            request = _with_diagnostics(request, call.diagnostics_previous)
        call.attempt(retry_count)
        return call, request

    def _new_call(
        self, request: httpx2.Request, scope: CallScope | None, owner: Any
    ) -> tuple[Call, httpx2.Request]:
        params = scope.params if scope is not None else None
        if params is None:
            request.read()
            try:
                params = orjson.loads(request.content)
            except orjson.JSONDecodeError:
                params = None
            if not isinstance(params, Mapping):
                params = {}
        session = scope.session if scope is not None else self.session
        previous: Any = _UNSET
        diagnostics = params.get("diagnostics")
        if isinstance(diagnostics, Mapping):
            previous = diagnostics.get("previous_message_id")
        splice = self.diagnostics and "diagnostics" not in params  # the caller's own wins
        if splice:
            with self._lock:
                previous = self._chain.get(session)
            request = _with_diagnostics(request, previous)
        blocks, tokens = fingerprint(params, self.store_text, self._entries)
        stream = scope.stream if scope is not None and scope.stream is not None else None
        clock = self.clock
        record = CallRecord(
            time=format_time(float(clock.now()) if clock is not None else time.time()),
            model=str(params.get("model", "")),
            backend=self.backend or "anthropic",
            session=session,
            stream=bool(params.get("stream")) if stream is None else stream,
            previous_message_id=None if previous is _UNSET else previous,
            blocks=blocks,
            prompt_tokens_estimate=tokens,
        )
        call = Call(self, record, scope, owner)
        call.diagnostics_previous = previous if splice else _UNSET
        if scope is not None:
            scope.call = call
            scope._calls.append(call)
        else:
            _last_call.set(weakref.ref(call))
        return call, request

    def hold(self, call: Call) -> None:
        with self._lock:
            self._held.add(call)
        _with_held.add(self)

    def release(self, call: Call) -> None:
        if self._held:
            with self._lock:
                self._held.discard(call)

    def write(self, call: Call, error: BaseException | None) -> None:
        """Append a finished call's record; chain its message for diagnostics."""
        self.release(call)
        record = call.record
        scope = call.scope
        if scope is not None:
            scope.record = record
        if record.ok and record.message_id:
            with self._lock:
                self._chain[record.session] = record.message_id
        try:
            self.ledger.append(record)
        except LedgerError as ledger_error:
            call.note_write_error(ledger_error, error)
        else:
            if self.on_record is not None:
                try:
                    self.on_record(record)
                except Exception as hook_error:
                    logger.error("cachescope: on_record raised %r", hook_error, exc_info=True)
                    if call.recorder_error is None:
                        call.recorder_error = hook_error
        if scope is not None and call.recorder_error is not None:
            scope.recorder_error = call.recorder_error


def _retry_count(request: httpx2.Request) -> int:
    """Which retry of its call the SDK says this attempt is (0 for a first attempt)."""
    value = request.headers.get(_RETRY_HEADER)
    return int(value) if value and value.isdigit() else 0


def _with_diagnostics(request: httpx2.Request, previous: str | None) -> httpx2.Request:
    """The request with `"diagnostics": {"previous_message_id": …}` added to its JSON object (the
    body is spliced, not re-encoded) and the diagnostics beta in `anthropic-beta`."""
    body = request.content.rstrip()
    if not body.endswith(b"}"):
        return request
    field = b'"diagnostics":' + orjson.dumps({"previous_message_id": previous})
    end = len(body) - 1
    before = end - 1
    while before >= 0 and body[before] in b" \t\r\n":
        before -= 1
    empty = before >= 0 and body[before] == ord("{")  # "{}": no comma before the new field
    joined = b"".join((memoryview(body)[:end], field if empty else b"," + field, b"}"))
    headers = request.headers.copy()
    headers["content-length"] = str(len(joined))
    betas = headers.get("anthropic-beta")
    if not betas:
        headers["anthropic-beta"] = DIAGNOSTICS_BETA
    elif DIAGNOSTICS_BETA not in [part.strip() for part in betas.split(",")]:
        headers["anthropic-beta"] = f"{betas},{DIAGNOSTICS_BETA}"
    return httpx2.Request(
        request.method, request.url, headers=headers, content=joined, extensions=request.extensions
    )


def _watch(call: Call, response: httpx2.Response, asynchronous: bool) -> httpx2.Response:
    """Show the response's body to `call`, as the reader reads it (or at once when the
    transport built it already read)."""
    try:
        call.response(response, decoded=response.is_stream_consumed)
        if response.is_stream_consumed:
            call.data(response.content)
            call.ended()
            return response
    except Exception as error:
        call._fault(error)
        return response
    if asynchronous:
        response.stream = AsyncObservedStream(response.stream, call)
    else:
        response.stream = ObservedStream(response.stream, call)
    return response


class RecordingTransport(httpx2.BaseTransport):
    """A sync transport that records the Messages calls passing it (see `Recorder`)."""

    def __init__(self, recorder: Recorder, transport: httpx2.BaseTransport) -> None:
        self.recorder = recorder
        self.transport = transport

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if not _is_messages(request):
            return self.transport.handle_request(request)
        call, request = self.recorder.begin(request, self)
        try:
            response = self.transport.handle_request(request)
        except BaseException as error:
            call.transport_error(error)
            raise
        return _watch(call, response, asynchronous=False)

    def close(self) -> None:
        try:
            self.transport.close()
        finally:
            self.recorder.flush(self)


class AsyncRecordingTransport(httpx2.AsyncBaseTransport):
    """An async transport that records the Messages calls passing it (see `Recorder`)."""

    def __init__(self, recorder: Recorder, transport: httpx2.AsyncBaseTransport) -> None:
        self.recorder = recorder
        self.transport = transport

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not _is_messages(request):
            return await self.transport.handle_async_request(request)
        call, request = self.recorder.begin(request, self)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as error:
            call.transport_error(error)
            raise
        return _watch(call, response, asynchronous=True)

    async def aclose(self) -> None:
        try:
            await self.transport.aclose()
        finally:
            self.recorder.flush(self)


class _ClientTransport(httpx2.BaseTransport):
    """An httpx client used as a transport: its own transport, mounts, hooks and auth apply."""

    def __init__(self, client: httpx2.Client) -> None:
        self.client = client

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self.client.send(request, stream=True)

    def close(self) -> None:
        self.client.close()


class _AsyncClientTransport(httpx2.AsyncBaseTransport):
    def __init__(self, client: httpx2.AsyncClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.client.send(request, stream=True)

    async def aclose(self) -> None:
        await self.client.aclose()


@overload
def recording_http_client(
    recorder: Recorder, http_client: httpx2.AsyncClient, **kwargs: Any
) -> httpx2.AsyncClient: ...
@overload
def recording_http_client(
    recorder: Recorder, http_client: httpx2.Client | None = None, **kwargs: Any
) -> httpx2.Client: ...
def recording_http_client(recorder: Recorder, http_client: Any = None, **kwargs: Any) -> Any:
    """An httpx client for `anthropic.Anthropic(http_client=...)` that sends through
    `http_client` (by default the SDK's own `DefaultHttpxClient`) and records with `recorder`.

    `http_client` keeps its transport, proxies, hooks and auth; its timeout and default headers
    carry over. An `httpx2.AsyncClient` gives an `httpx2.AsyncClient`.
    """
    if http_client is None:
        http_client = anthropic.DefaultHttpxClient()
    kwargs.setdefault("timeout", http_client.timeout)
    kwargs.setdefault("headers", http_client.headers)
    if isinstance(http_client, httpx2.AsyncClient):
        transport = recorder.wrap_transport(_AsyncClientTransport(http_client))
        return httpx2.AsyncClient(transport=transport, **kwargs)
    return httpx2.Client(transport=recorder.wrap_transport(_ClientTransport(http_client)), **kwargs)


# Recorders holding failures that wait for a retry: written at exit if none came.
_with_held: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for recorder in list(_with_held):
        try:
            recorder.flush()
        except Exception:  # pragma: no cover - nothing to tell at exit
            logger.exception("cachescope: could not write a held record at exit")
