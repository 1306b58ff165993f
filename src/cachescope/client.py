"""`CachingClient` / `AsyncCachingClient`: the real `anthropic` SDK, recorded call by call.

The client builds an ordinary `anthropic.Anthropic` (or `AsyncAnthropic`) — pointed at the real API
or at the offline simulator's HTTP transport — and hands out its own `messages` resource: a subclass
of the SDK's, so `create`, `stream`, `count_tokens` and the rest keep the SDK's signatures, checks
and return types. Only the resource's low-level `_post` is wrapped: each `/v1/messages` call is
fingerprinted, sent, and turned into a `CallRecord` that reaches the ledger (on disk, fsynced)
before the call returns — successful or not. SDK exceptions reach the caller unchanged, after they
are recorded. `count_tokens` is free and uses no cache, so it is forwarded but not recorded.

`diagnostics.previous_message_id` is chained per session (or per client for calls outside a
session) so the API's own `cache_miss_reason` is recorded beside cachescope's diagnosis.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import anthropic
from anthropic._response import APIResponse, AsyncAPIResponse
from anthropic._streaming import AsyncStream, Stream
from anthropic.resources.messages import AsyncMessages, Messages

from cachescope._client_record import (
    FingerprintCache,
    Probe,
    StreamWatcher,
    clean_body,
    current_probe,
    fill_error,
    fill_message,
    fill_timing,
    fingerprint_blocks,
    install_probe_hooks,
    materialize,
    new_record,
)
from cachescope._errors import CachescopeError
from cachescope.ledger import CallRecord, Ledger, LedgerError

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.sim import Simulator

__all__ = ["AsyncCachingClient", "AsyncSession", "CachingClient", "Session", "resolve_backend"]

logger = logging.getLogger("cachescope")

Backend = Literal["auto", "sim", "anthropic"]
DIAGNOSTICS_BETA = "cache-diagnosis-2026-04-07"
MESSAGES_PATH = "/v1/messages"

_announced: set[str] = set()
_announce_lock = threading.Lock()


class _Scope:
    """Which session a call belongs to, and where `Session.send` picks up the record."""

    __slots__ = ("record", "session")

    def __init__(self, session: _SessionBase | None) -> None:
        self.session = session
        self.record: CallRecord | None = None


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "cachescope_scope", default=None
)


def resolve_backend(backend: str = "auto", api_key: str | None = None) -> str:
    """Which backend a client built with these arguments would use: "sim" or "anthropic".

    "auto" means the real API when an API key is given or `ANTHROPIC_API_KEY` is set, else the
    offline simulator. Raises `CachescopeError` for an unknown backend, or for "anthropic" with no
    key anywhere (instead of the SDK failing later, at the first request).
    """
    if backend not in ("auto", "sim", "anthropic"):
        raise CachescopeError(
            f'backend must be "auto", "sim" or "anthropic"; got {backend!r}. '
            '"auto" uses the real API when ANTHROPIC_API_KEY is set, else the simulator.'
        )
    has_key = bool(
        api_key or os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")
    )
    if backend == "auto":
        return "anthropic" if has_key else "sim"
    if backend == "anthropic" and not has_key:
        raise CachescopeError(
            'backend="anthropic" needs an API key: set ANTHROPIC_API_KEY or pass api_key=... '
            '(backend="auto" or "sim" uses the offline simulator instead).'
        )
    return backend


def _announce(backend: str, chosen_by_default: bool) -> None:
    """Say once per process, visibly, which backend is in use (and why, for "auto")."""
    with _announce_lock:
        if backend in _announced:
            return
        _announced.add(backend)
    if backend == "sim":
        why = " (no ANTHROPIC_API_KEY set)" if chosen_by_default else ""
        text = f"cachescope: using the offline simulator{why}; nothing is billed."
    else:
        text = "cachescope: using the real Anthropic API; calls are billed."
    logger.info(text)
    print(text, file=sys.stderr)


class _ClientBase:
    """What the sync and async clients share: backend choice, ledger, chaining, recording."""

    backend: str
    simulator: Simulator | None
    ledger: Ledger
    clock: Any

    def _setup(
        self,
        backend: str,
        api_key: str | None,
        simulator: Simulator | None,
        ledger: Ledger | None,
        clock: Any,
        diagnostics: bool,
        store_text: bool,
    ) -> str | None:
        self.backend = resolve_backend(
            "sim" if simulator is not None and backend == "auto" else backend,
            api_key if simulator is None else None,
        )
        if simulator is not None and self.backend == "anthropic":
            raise CachescopeError(
                'A simulator was given with backend="anthropic"; use backend="sim" (or leave '
                "it out) to send calls to the simulator."
            )
        if self.backend == "sim":
            if simulator is None:
                from cachescope.sim import Simulator

                simulator = Simulator(clock=clock)
            self.simulator = simulator
            self.clock = clock if clock is not None else simulator.clock
            api_key = api_key or "sim"
        else:
            from cachescope.sim import RealClock

            self.simulator = None
            self.clock = clock if clock is not None else RealClock()
        self.ledger = ledger if ledger is not None else Ledger()
        self.diagnostics = diagnostics
        self.store_text = store_text
        self._token_cache: dict[int, int] = {}
        self._fingerprints = FingerprintCache()
        self._chain: dict[str | None, str | None] = {}
        self._chain_lock = threading.Lock()
        self._sessions: dict[str, Any] = {}
        _announce(self.backend, chosen_by_default=backend == "auto" and simulator is None)
        return api_key

    # -- around one call --------------------------------------------------------------------------

    def _prepare(
        self, body: Mapping[str, Any], options: Mapping[str, Any], stream: bool
    ) -> tuple[CallRecord, dict[str, Any], Probe, _Scope | None]:
        """Fingerprint the request, add diagnostics chaining, start the record and the probe."""
        scope = _scope.get()
        session = scope.session if scope is not None else None
        key = session.name if session is not None else None
        sent = dict(body)
        materialize(sent)
        params = clean_body(sent)
        extra_json = options.get("extra_json") or {}
        previous: str | None = None
        if self.diagnostics and "diagnostics" not in params and "diagnostics" not in extra_json:
            with self._chain_lock:
                previous = self._chain.get(key)
            sent["diagnostics"] = {"previous_message_id": previous}
            options = _with_beta(options, DIAGNOSTICS_BETA)
        elif isinstance(params.get("diagnostics"), Mapping):
            previous = params["diagnostics"].get("previous_message_id")
        blocks, tokens = fingerprint_blocks(
            params, self._token_cache, self.store_text, self._fingerprints, key
        )
        record = new_record(
            now=float(self.clock.now()),
            model=str(params.get("model", "")),
            backend=self.backend,
            session=key,
            stream=stream,
            previous_message_id=previous,
            blocks=blocks,
            prompt_tokens=tokens,
        )
        return record, {"body": sent, "options": options}, Probe(), scope

    def _chain_to(self, record: CallRecord) -> None:
        if record.ok and record.message_id:
            with self._chain_lock:
                self._chain[record.session] = record.message_id

    def _save(self, record: CallRecord, scope: _Scope | None, error: BaseException | None) -> None:
        """Append to the ledger; a failed call's own exception wins over a ledger error."""
        if scope is not None:
            scope.record = record
            if scope.session is not None:
                scope.session._records.append(record)
        self._chain_to(record)
        if error is None:
            self.ledger.append(record)
            return
        try:
            self.ledger.append(record)
        except LedgerError as ledger_error:
            logger.error("cachescope: the failed call could not be recorded: %s", ledger_error)
            if hasattr(error, "add_note"):
                error.add_note(f"cachescope could not record this failed call: {ledger_error}")

    def _finish(
        self,
        record: CallRecord,
        probe: Probe,
        scope: _Scope | None,
        *,
        message: Any = None,
        watcher: StreamWatcher | None = None,
        error: BaseException | None = None,
    ) -> None:
        end = time.perf_counter()
        if message is not None:
            fill_message(record, message)
        if watcher is not None:
            watcher.fill(record)
        if error is not None:
            fill_error(record, error)
        fill_timing(record, probe, watcher.first_token if watcher else None, end)
        self._save(record, scope, error)

    def _get_session(self, name: str, prompt: Any, factory: Any) -> Any:
        existing = self._sessions.get(name)
        if existing is not None:
            if prompt is not None:
                existing.prompt = prompt
            return existing
        if prompt is None:
            raise CachescopeError(
                f"No session named {name!r} yet: pass the prompt, e.g. client.session({name!r}, prompt)."
            )
        session = factory(self, name, prompt)
        self._sessions[name] = session
        return session


def _with_beta(options: Mapping[str, Any], beta: str) -> dict[str, Any]:
    out = dict(options)
    headers = dict(out.get("headers") or {})
    current = headers.get("anthropic-beta")
    if isinstance(current, str) and current:
        if beta not in [part.strip() for part in current.split(",")]:
            headers["anthropic-beta"] = f"{current},{beta}"
    else:
        headers["anthropic-beta"] = beta
    out["headers"] = headers
    return out


# -- the sync client --------------------------------------------------------------------------------


class CachingMessages(Messages):
    """The SDK's `messages` resource with every `/v1/messages` call recorded."""

    def __init__(self, client: anthropic.Anthropic, owner: CachingClient) -> None:
        super().__init__(client)
        self._owner = owner
        self._sdk_post = client.post
        self._post = self._recorded_post

    def _recorded_post(self, path: str, *, body: Any = None, options: Any = None, **kw: Any) -> Any:
        if path != MESSAGES_PATH or not isinstance(body, Mapping):
            return self._sdk_post(path, body=body, options=cast(Any, options or {}), **kw)
        owner = self._owner
        stream = bool(kw.get("stream"))
        record, args, probe, scope = owner._prepare(body, options or {}, stream)
        token = current_probe.set(probe)
        try:
            result = self._sdk_post(path, **args, **kw)
        except BaseException as error:
            owner._finish(record, probe, scope, error=error)
            raise
        finally:
            current_probe.reset(token)
        if isinstance(result, Stream):
            # `_iterator` is a cached_property: the instance entry takes its place.
            vars(result)["_iterator"] = _watch_stream(owner, result._iterator, record, probe, scope)
            return result
        if isinstance(result, APIResponse):
            if stream:
                return result  # raw streaming responses are left to the caller, unrecorded
            owner._finish(record, probe, scope, message=result.parse())
            return result
        owner._finish(record, probe, scope, message=result)
        return result


def _watch_stream(
    owner: _ClientBase,
    events: Iterator[Any],
    record: CallRecord,
    probe: Probe,
    scope: _Scope | None,
) -> Iterator[Any]:
    watcher = StreamWatcher()
    error: BaseException | None = None
    try:
        for event in events:
            watcher.see(event)
            yield event
    except BaseException as exc:
        error = exc
        raise
    finally:
        if isinstance(error, GeneratorExit):
            error = None  # the caller stopped reading early: record what arrived
        owner._finish(record, probe, scope, watcher=watcher, error=error)


class CachingClient(_ClientBase):
    """The `anthropic` SDK client, with every message call recorded in a ledger.

    Parameters
    ----------
    backend:
        "auto" (the real API when `ANTHROPIC_API_KEY` is set, else the simulator), "sim" or
        "anthropic". The choice is announced once per process.
    api_key:
        Passed to the SDK (defaults to `ANTHROPIC_API_KEY`; "sim" for the simulator). It is never
        written to the ledger.
    simulator:
        The `cachescope.sim.Simulator` to send to (a new one by default); implies backend="sim".
    ledger:
        Where records go; by default a new in-memory `Ledger`.
    clock:
        Stamps records (and drives a new simulator); defaults to the simulator's clock or the wall
        clock.
    diagnostics:
        Chain `diagnostics.previous_message_id` per session so the API reports its
        `cache_miss_reason` (default True; False opts out).
    store_text:
        Keep each block's prompt text in the record's fingerprint (default False: hashes only).
    **sdk_kwargs:
        Anything else `anthropic.Anthropic` accepts (`max_retries`, `timeout`, ...).

    Attributes
    ----------
    messages:
        The SDK's messages resource (same signatures and return types), recorded.
    sdk:
        The underlying `anthropic.Anthropic`; other resources (`client.models`, ...) are forwarded.
    """

    def __init__(
        self,
        backend: Backend = "auto",
        api_key: str | None = None,
        simulator: Simulator | None = None,
        ledger: Ledger | None = None,
        clock: Any = None,
        *,
        diagnostics: bool = True,
        store_text: bool = False,
        **sdk_kwargs: Any,
    ) -> None:
        key = self._setup(backend, api_key, simulator, ledger, clock, diagnostics, store_text)
        if "http_client" not in sdk_kwargs:
            sdk_kwargs["http_client"] = (
                self.simulator.http_client()
                if self.simulator is not None
                else anthropic.DefaultHttpxClient()
            )
        install_probe_hooks(sdk_kwargs["http_client"], is_async=False)
        self.sdk = anthropic.Anthropic(api_key=key, **sdk_kwargs)
        self.messages = CachingMessages(self.sdk, self)

    def session(self, name: str, prompt: Any = None) -> Session:
        """The conversation `name` (created on first use with `prompt`; a later `prompt` replaces
        the old one and keeps the history)."""
        session: Session = self._get_session(name, prompt, Session)
        return session

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "sdk":
            raise AttributeError(name)
        return getattr(self.sdk, name)

    def close(self) -> None:
        self.sdk.close()

    def __enter__(self) -> CachingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CachingClient(backend={self.backend!r}, ledger={self.ledger!r})"


# -- the async client -------------------------------------------------------------------------------


class AsyncCachingMessages(AsyncMessages):
    """The SDK's async `messages` resource with every `/v1/messages` call recorded."""

    def __init__(self, client: anthropic.AsyncAnthropic, owner: AsyncCachingClient) -> None:
        super().__init__(client)
        self._owner = owner
        self._sdk_post = client.post
        self._post = self._recorded_post

    async def _recorded_post(
        self, path: str, *, body: Any = None, options: Any = None, **kw: Any
    ) -> Any:
        if path != MESSAGES_PATH or not isinstance(body, Mapping):
            return await self._sdk_post(path, body=body, options=cast(Any, options or {}), **kw)
        owner = self._owner
        stream = bool(kw.get("stream"))
        record, args, probe, scope = owner._prepare(body, options or {}, stream)
        token = current_probe.set(probe)
        try:
            result = await self._sdk_post(path, **args, **kw)
        except BaseException as error:
            owner._finish(record, probe, scope, error=error)
            raise
        finally:
            current_probe.reset(token)
        if isinstance(result, AsyncStream):
            vars(result)["_iterator"] = _watch_async_stream(
                owner, result._iterator, record, probe, scope
            )
            return result
        if isinstance(result, AsyncAPIResponse):
            if stream:
                return result
            owner._finish(record, probe, scope, message=await result.parse())
            return result
        owner._finish(record, probe, scope, message=result)
        return result


async def _watch_async_stream(
    owner: _ClientBase,
    events: AsyncIterator[Any],
    record: CallRecord,
    probe: Probe,
    scope: _Scope | None,
) -> AsyncIterator[Any]:
    watcher = StreamWatcher()
    error: BaseException | None = None
    try:
        async for event in events:
            watcher.see(event)
            yield event
    except BaseException as exc:
        error = exc
        raise
    finally:
        if isinstance(error, GeneratorExit):
            error = None
        owner._finish(record, probe, scope, watcher=watcher, error=error)


class AsyncCachingClient(_ClientBase):
    """`CachingClient` for asyncio: the same parameters, over `anthropic.AsyncAnthropic`."""

    def __init__(
        self,
        backend: Backend = "auto",
        api_key: str | None = None,
        simulator: Simulator | None = None,
        ledger: Ledger | None = None,
        clock: Any = None,
        *,
        diagnostics: bool = True,
        store_text: bool = False,
        **sdk_kwargs: Any,
    ) -> None:
        key = self._setup(backend, api_key, simulator, ledger, clock, diagnostics, store_text)
        if "http_client" not in sdk_kwargs:
            sdk_kwargs["http_client"] = (
                self.simulator.async_http_client()
                if self.simulator is not None
                else anthropic.DefaultAsyncHttpxClient()
            )
        install_probe_hooks(sdk_kwargs["http_client"], is_async=True)
        self.sdk = anthropic.AsyncAnthropic(api_key=key, **sdk_kwargs)
        self.messages = AsyncCachingMessages(self.sdk, self)

    def session(self, name: str, prompt: Any = None) -> AsyncSession:
        """Like `CachingClient.session`; `send` is a coroutine."""
        session: AsyncSession = self._get_session(name, prompt, AsyncSession)
        return session

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "sdk":
            raise AttributeError(name)
        return getattr(self.sdk, name)

    async def close(self) -> None:
        await self.sdk.close()

    async def __aenter__(self) -> AsyncCachingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncCachingClient(backend={self.backend!r}, ledger={self.ledger!r})"


# -- sessions ---------------------------------------------------------------------------------------


def _strip_cache_control(content: Any) -> Any:
    if isinstance(content, str):
        return content
    out = []
    for block in content:
        if isinstance(block, Mapping):
            out.append({k: v for k, v in block.items() if k != "cache_control"})
        else:
            out.append(block)
    return out


def _reply_content(message: Any) -> list[dict[str, Any]]:
    """The assistant turn, echoed back verbatim (spec §7): the blocks as the API sent them."""
    return [block.to_dict(exclude_none=True) for block in message.content]


class _SessionBase:
    """A named conversation over a `Prompt`; history is append-only."""

    def __init__(self, client: _ClientBase, name: str, prompt: Any) -> None:
        self.client = client
        self.name = name
        self.prompt = prompt
        self._history: list[dict[str, Any]] = []
        self._records: list[CallRecord] = []

    @property
    def history(self) -> tuple[dict[str, Any], ...]:
        """The turns so far (user turns as sent, without `cache_control`), oldest first."""
        return tuple(self._history)

    @property
    def records(self) -> list[CallRecord]:
        """This session's call records, oldest first (failed calls included)."""
        return list(self._records)

    def reset(self) -> None:
        """Start the conversation over (the ledger keeps its records)."""
        self._history = []
        with self.client._chain_lock:
            self.client._chain.pop(self.name, None)

    def _params(self, user_text: Any, kw: Mapping[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = self.prompt.render(
            messages=list(self._history), user=user_text, **kw
        )
        return params

    def _append(self, params: Mapping[str, Any], record: CallRecord) -> None:
        message = record.message
        if message is None or not message.content:
            return  # a pre-warm (max_tokens=0) or empty reply is not a turn
        sent = list(params["messages"])
        prefill = ""
        if sent and sent[-1].get("role") == "assistant":
            # A prefill: the history keeps the user turn and the whole reply (prefill included).
            last = sent.pop()["content"]
            prefill = last if isinstance(last, str) else ""
        user_turn = sent[-1]
        reply = _reply_content(message)
        if prefill and reply and reply[0].get("type") == "text":
            reply[0] = {**reply[0], "text": prefill + reply[0]["text"]}
        self._history.append(
            {"role": user_turn["role"], "content": _strip_cache_control(user_turn["content"])}
        )
        self._history.append({"role": "assistant", "content": reply})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self._history)} turns)"


class Session(_SessionBase):
    """A conversation: `send` renders the prompt with the history, sends it and appends the reply.

    Returned by `CachingClient.session(name, prompt)`.
    """

    def send(
        self,
        user_text: Any,
        *,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        **kw: Any,
    ) -> CallRecord:
        """Send the next user turn; returns its `CallRecord` (`record.message` is the SDK Message).

        `kw` goes to `prompt.render` (`max_tokens`, `temperature`, ...). With `stream=True` the
        reply is streamed and `on_text` gets each piece of text as it arrives. SDK errors
        propagate (the failed call is recorded, the history is unchanged).
        """
        return self.create(self._params(user_text, kw), stream=stream, on_text=on_text)

    def create(
        self,
        params: Mapping[str, Any],
        *,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        keep_history: bool = True,
    ) -> CallRecord:
        """Send ready-made `messages.create` params (e.g. `Cell.render(history)`) as this
        session's next call: recorded under the session, chained for diagnostics, and — unless
        `keep_history` is False — appended to the history. A trailing assistant message is a
        prefill; the history keeps the user turn and the whole reply."""
        scope = _Scope(self)
        token = _scope.set(scope)
        final: Any = None
        try:
            messages = self.client.messages  # type: ignore[attr-defined]
            if stream:
                with messages.stream(**params) as events:
                    for text in events.text_stream:
                        if on_text is not None:
                            on_text(text)
                    final = events.get_final_message()
            else:
                messages.create(**params)
        finally:
            _scope.reset(token)
        record = scope.record
        assert record is not None
        if record.message is None and final is not None:
            record.message = final  # the stream's accumulated Message
        if keep_history:
            self._append(params, record)
        return record


class AsyncSession(_SessionBase):
    """`Session` for `AsyncCachingClient`: `await session.send(...)`."""

    async def send(
        self,
        user_text: Any,
        *,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        **kw: Any,
    ) -> CallRecord:
        """`Session.send`, awaited."""
        return await self.create(self._params(user_text, kw), stream=stream, on_text=on_text)

    async def create(
        self,
        params: Mapping[str, Any],
        *,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        keep_history: bool = True,
    ) -> CallRecord:
        """`Session.create`, awaited."""
        scope = _Scope(self)
        token = _scope.set(scope)
        final: Any = None
        try:
            messages = self.client.messages  # type: ignore[attr-defined]
            if stream:
                async with messages.stream(**params) as events:
                    async for text in events.text_stream:
                        if on_text is not None:
                            on_text(text)
                    final = await events.get_final_message()
            else:
                await messages.create(**params)
        finally:
            _scope.reset(token)
        record = scope.record
        assert record is not None
        if record.message is None and final is not None:
            record.message = final
        if keep_history:
            self._append(params, record)
        return record
