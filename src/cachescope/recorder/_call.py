"""One logical API call as the transport sees it: its attempts, its response, and its record.

The SDK sends every attempt of a call (retries after 429/5xx, timeouts and dropped connections)
through the transport. A `Call` counts them and writes one record when the call is over:

* a successful response, once its body has been read (JSON) or its stream has ended or been
  closed;
* a failure, once no retry can follow it. Inside a `CallScope` (a caching client's call) that is
  when the scope closes, with the exception its caller got. Outside one, the SDK's published
  retry policy decides: a failure it does not retry (a 4xx other than 408/409/429, a response
  marked `x-should-retry: false`, a stream broken after its headers, an attempt past the
  recorder's `max_retries`) is final at once; one it may retry waits for the next attempt of the
  call, the next call started in the same thread or task, `Recorder.flush()` or the transport's
  close.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from cachescope.ledger import CallRecord, LedgerError
from cachescope.recorder._fill import (
    CONTENT_ENCODING_HEADER,
    CONTENT_TYPE_HEADER,
    SHOULD_RETRY_HEADER,
    SIM_HEADER,
    StreamState,
    fill_api_error,
    fill_error,
    fill_message,
    fill_timing,
    read_headers,
)
from cachescope.recorder._observe import SSEReader, decoder

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.recorder import CallScope, Recorder

logger = logging.getLogger("cachescope")

OPEN, HELD, DONE = "open", "held", "done"


def _as_is(chunk: bytes) -> bytes:
    return chunk


class Call:
    """The attempts of one call and what became of them (see the module docstring)."""

    def __init__(
        self,
        recorder: Recorder,
        record: CallRecord,
        scope: CallScope | None,
        owner: Any,
    ) -> None:
        self.recorder = recorder
        self.record = record
        self.scope = scope
        self.owner = owner  # the transport wrapper the attempts pass (closing it flushes)
        self.attempts = 0
        self.retry_count = 0
        self.started = time.perf_counter()
        self.state = OPEN
        self.status = 0
        # the `previous_message_id` added to each attempt's body (`_UNSET`: nothing is added)
        self.diagnostics_previous: Any = None
        self.headers: dict[bytes, str] | None = None
        self.backend_seen: str | None = None
        # the last attempt's failure as the wire showed it: (status, body) or an exception
        self.failure: tuple[int | None, Any] | BaseException | None = None
        self.stream_state: StreamState | None = None
        self.message: Any = None
        self.recorder_error: BaseException | None = None
        self._lock = threading.Lock()
        # set while a response body is read
        self._body: list[bytes] | None = None
        self._decode: Any = None
        self._sse: SSEReader | None = None

    # -- attempts ---------------------------------------------------------------------------------

    def attempt(self, retry_count: int) -> None:
        with self._lock:
            self.attempts += 1
            self.retry_count = retry_count
            self.state = OPEN
            self.failure = None
            self.recorder.release(self)

    def response(self, response: Any, decoded: bool = False) -> None:
        """The headers of an attempt's response have arrived; watch its body (raw chunks, or
        with `decoded` the content as httpx decoded it)."""
        headers = read_headers(response.headers)
        self.headers = headers
        if SIM_HEADER in headers:
            self.backend_seen = "sim"
        self.status = response.status_code
        content_type = headers.get(CONTENT_TYPE_HEADER, "")
        self._decode = _as_is if decoded else decoder(headers.get(CONTENT_ENCODING_HEADER))
        if content_type.startswith("text/event-stream") and 200 <= self.status < 300:
            self.stream_state = StreamState()
            self._sse = SSEReader(self._event)
            self._body = None
        else:
            self._sse = None
            self._body = []

    def data(self, chunk: bytes) -> None:
        try:
            decode = self._decode
            if decode is None:
                return
            if self._sse is not None:
                self._sse.feed(decode(chunk))
            elif self._body is not None:
                self._body.append(decode(chunk))
        except Exception as error:  # a recorder fault must not reach the reader
            self._fault(error)

    def _event(self, kind: str, data: Any) -> None:
        state = self.stream_state
        assert state is not None
        if state.first_token is None and kind in ("content_block_start", "content_block_delta"):
            state.first_token = time.perf_counter()
        state.see(kind, data)
        if kind == "message_stop":
            self._end()

    def ended(self) -> None:
        """The body was read to its end."""
        try:
            if self._sse is not None:
                self._sse.finish()
            self._end()
        except Exception as error:
            self._fault(error)
            self._end()

    def closed(self) -> None:
        """The body was closed (after its end, or early: what arrived is recorded)."""
        self._end()

    def broken(self, error: BaseException) -> None:
        """Reading the body raised (a dropped connection, a timeout)."""
        with self._lock:
            if self.state != OPEN:
                return
            self.failure = error
        self._settle(retryable=False)

    def transport_error(self, error: BaseException) -> None:
        """The attempt failed before any response arrived."""
        with self._lock:
            if self.state != OPEN:
                return
            self.failure = error
        self._settle(retryable=True)

    def _end(self) -> None:
        with self._lock:
            if self.state != OPEN or (self._body is None and self._sse is None):
                return
            body, self._body = self._body, None
            self._sse = None
        status = self.status
        if self.stream_state is not None:
            error = self.stream_state.error
            if error is None:
                self._finish()
            else:
                with self._lock:
                    self.failure = (None, error)
                self._settle(retryable=False)
            return
        parsed: Any = None
        if body:
            try:
                parsed = orjson.loads(b"".join(body))
            except orjson.JSONDecodeError:
                parsed = b"".join(body).decode("utf-8", "replace")
        if 200 <= status < 300:
            self.message = parsed
            self._finish()
            return
        with self._lock:
            self.failure = (status, parsed)
        advice = (self.headers or {}).get(SHOULD_RETRY_HEADER)
        retryable = status in (408, 409, 429) or status >= 500
        if advice is not None:
            retryable = advice.strip().lower() == "true"
        self._settle(retryable=retryable)

    def _settle(self, retryable: bool) -> None:
        """A failed attempt: final now, or held until the scope closes or a retry arrives."""
        if self.scope is not None and not self.scope.closed:
            with self._lock:
                self.state = HELD
            return
        if retryable and self.retry_count < self.recorder.max_retries:
            with self._lock:
                self.state = HELD
            self.recorder.hold(self)
            return
        self._finish()

    # -- the end --------------------------------------------------------------------------------

    def scope_closed(self, error: BaseException | None) -> None:
        """The caller's call returned (`error` None) or raised `error`."""
        with self._lock:
            state = self.state
        if state == DONE:
            return
        if error is not None:
            self._finish(error)
        elif state == HELD:
            self._finish()
        # else: a stream still being read: its end writes the record

    def flush(self) -> None:
        """No retry will come: a held failure is final."""
        with self._lock:
            held = self.state == HELD
        if held:
            self._finish()

    def _finish(self, error: BaseException | None = None) -> None:
        with self._lock:
            if self.state == DONE:
                return
            self.state = DONE
            self._body = self._sse = None
        record = self.record
        try:
            record.retries = max(0, self.attempts - 1)
            if self.backend_seen is not None and self.recorder.backend is None:
                record.backend = self.backend_seen
            state = self.stream_state
            if state is not None:
                state.fill(record)
            elif isinstance(self.message, Mapping):
                record.message = self.message
                fill_message(record, self.message)
            failure = self.failure
            if isinstance(failure, tuple):
                fill_api_error(record, *failure)
            elif isinstance(failure, BaseException):
                fill_error(record, failure)
            if error is not None:
                fill_error(record, error)
            fill_timing(
                record,
                self.headers,
                self.started,
                state.first_token if state is not None else None,
            )
        except Exception as fault:
            self._fault(fault)
        self.recorder.write(self, error)

    def _fault(self, error: BaseException) -> None:
        logger.error("cachescope: could not record a call: %r", error, exc_info=error)
        if self.recorder_error is None:
            self.recorder_error = error

    def note_write_error(self, error: LedgerError, caller_error: BaseException | None) -> None:
        """The record could not be written: a failed call's own exception says so in a note;
        a successful one's caller gets the ledger's error (from a caching client)."""
        if caller_error is not None:
            logger.error("cachescope: the failed call could not be recorded: %s", error)
            if hasattr(caller_error, "add_note"):
                caller_error.add_note(f"cachescope could not record this failed call: {error}")
            return
        if self.recorder_error is None:
            self.recorder_error = error
