"""Watching a response body go by: the byte streams the recorder puts under a response.

`ObservedStream` / `AsyncObservedStream` hand every chunk on exactly as the transport produced it,
when the reader asks for it (nothing is read ahead), and show a decoded copy to a `Watcher`: the
JSON body is kept to be parsed at its end, an SSE stream is split into events as it passes. The
watcher is told how the body ended: read to the end, closed early, or broken by an exception
(which still reaches the reader unchanged).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import httpx2
import orjson


class Watcher(Protocol):
    def data(self, chunk: bytes) -> None: ...
    def ended(self) -> None: ...
    def closed(self) -> None: ...
    def broken(self, error: BaseException) -> None: ...


class ObservedStream(httpx2.SyncByteStream):
    def __init__(self, inner: Any, watcher: Watcher) -> None:
        self._inner = inner
        self._watcher = watcher

    def __iter__(self) -> Iterator[bytes]:
        watcher = self._watcher
        try:
            for chunk in self._inner:
                watcher.data(chunk)
                yield chunk
        except GeneratorExit:
            watcher.closed()  # the reader stopped early
            raise
        except BaseException as error:
            watcher.broken(error)
            raise
        watcher.ended()

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._watcher.closed()


class AsyncObservedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, watcher: Watcher) -> None:
        self._inner = inner
        self._watcher = watcher

    async def __aiter__(self) -> AsyncIterator[bytes]:
        watcher = self._watcher
        try:
            async for chunk in self._inner:
                watcher.data(chunk)
                yield chunk
        except GeneratorExit:
            watcher.closed()
            raise
        except BaseException as error:
            watcher.broken(error)
            raise
        watcher.ended()

    async def aclose(self) -> None:
        try:
            close = getattr(self._inner, "aclose", None)
            if close is not None:
                await close()
        finally:
            self._watcher.closed()


# -- content encodings ------------------------------------------------------------------------


def decoder(encoding: str | None) -> Callable[[bytes], bytes] | None:
    """A function that decodes successive raw chunks of a body sent with `encoding`; None for an
    encoding that cannot be decoded here (httpx only asks for those it can decode itself)."""
    names = [part.strip().lower() for part in (encoding or "").split(",") if part.strip()]
    names = [name for name in names if name != "identity"]
    if not names:
        return _identity
    if len(names) > 1:
        return None
    name = names[0]
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress
    if name == "deflate":
        return _Deflate().decode
    if name == "br":
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            return None
        return brotli.Decompressor().process  # type: ignore[no-any-return]
    return None


def _identity(chunk: bytes) -> bytes:
    return chunk


class _Deflate:
    """zlib-wrapped deflate, or raw deflate from servers that send it bare (as httpx allows)."""

    def __init__(self) -> None:
        self._first = True
        self._obj = zlib.decompressobj()

    def decode(self, chunk: bytes) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._obj.decompress(chunk)
            except zlib.error:
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(chunk)


# -- server-sent events -------------------------------------------------------------------------

# Events whose data the record needs; the rest (text deltas, pings) are only named.
PARSED_EVENTS = frozenset({"message_start", "message_delta", "error", "message_stop"})


class SSEReader:
    """Splits a byte stream into (event name, data) as it arrives (lines end in LF, CRLF or CR).

    Only the events in `PARSED_EVENTS` have their data parsed as JSON; for the others `on_event`
    gets None as data. An event sent without a name is named by its data's "type".
    """

    __slots__ = ("_data", "_event", "_on_event", "_rest")

    def __init__(self, on_event: Callable[[str, Any], None]) -> None:
        self._on_event = on_event
        self._rest = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        text = self._rest + chunk if self._rest else chunk
        if b"\r" in text:
            keep = text.endswith(b"\r")  # a CR at the end may be the first half of a CRLF
            if keep:
                text = text[:-1]
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep:
                text += b"\r"
        lines = text.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            if not line:
                self._dispatch()
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)

    def finish(self) -> None:
        if self._rest and self._rest != b"\r":
            self.feed(b"\n")
        self._dispatch()

    def _dispatch(self) -> None:
        name, data = self._event, self._data
        self._event, self._data = None, []
        if not data and name is None:
            return
        parsed: Any = None
        if name is None or name in PARSED_EVENTS:
            try:
                parsed = orjson.loads(b"\n".join(data)) if data else None
            except orjson.JSONDecodeError:
                parsed = None
            if name is None:
                name = str(parsed.get("type")) if isinstance(parsed, dict) else "message"
        self._on_event(name, parsed)
