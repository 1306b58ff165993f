"""`CachingClient` / `AsyncCachingClient`: the real `anthropic` SDK, recorded call by call.

The client builds an ordinary `anthropic.Anthropic` (or `AsyncAnthropic`) — pointed at the real API
or at the offline simulator — whose HTTP transport is wrapped by a `cachescope.recorder.Recorder`:
each `/v1/messages` call is recorded at the transport seam and reaches the ledger (on disk,
fsynced) before the call returns, successful or not. `count_tokens` is free and uses no cache, so
it passes unrecorded. `client.messages` is the SDK's own resource behind a thin wrapper: `create`
and `stream` open a `CallScope` around the SDK's method, so the record knows the call's session,
fingerprints the params with their layer names, and names the exception the caller got. SDK
exceptions reach the caller unchanged.

`diagnostics.previous_message_id` is chained per session (or per client for calls outside a
session) by the recorder, in the JSON going out, so the API's own `cache_miss_reason` is recorded
beside cachescope's diagnosis.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import anthropic
import httpx2
from anthropic import NotGiven, Omit

from cachescope._client_sessions import AsyncSession, Session
from cachescope._errors import CachescopeError
from cachescope.ledger import Ledger
from cachescope.recorder import CallScope, Recorder, recording_http_client

if TYPE_CHECKING:  # pragma: no cover
    from anthropic.resources.messages import AsyncMessages, Messages

    from cachescope.sim import Simulator

__all__ = ["AsyncCachingClient", "AsyncSession", "CachingClient", "Session", "resolve_backend"]

logger = logging.getLogger("cachescope")

Backend = Literal["auto", "sim", "anthropic"]

_announced: set[str] = set()
_announce_lock = threading.Lock()


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


# Keyword arguments of `messages.create` that are not part of the request body.
_NOT_BODY = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


def _body_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request body the SDK will send for these keyword arguments (as the cache reads it):
    "not given" markers left out, `extra_body` merged in. One-shot iterables of messages, system
    blocks or tools become lists first, in `kwargs`, so reading them does not use them up."""
    for key in ("messages", "system", "tools"):
        value = kwargs.get(key)
        if value is not None and not isinstance(value, (list, tuple, str, Mapping, NotGiven, Omit)):
            kwargs[key] = list(value)
    params = {
        key: value
        for key, value in kwargs.items()
        if key not in _NOT_BODY and not isinstance(value, (NotGiven, Omit))
    }
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        params.update(extra)
    return params


class _ClientBase:
    """What the sync and async clients share: backend choice, ledger, recorder, sessions."""

    backend: str
    simulator: Simulator | None
    ledger: Ledger
    recorder: Recorder
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
        max_retries: int,
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
        self.recorder = Recorder(
            self.ledger,
            backend=self.backend,
            clock=self.clock,
            store_text=store_text,
            diagnostics=diagnostics,
            max_retries=max_retries,
        )
        self._sessions: dict[str, Any] = {}
        _announce(self.backend, chosen_by_default=backend == "auto" and simulator is None)
        return api_key

    def _http_client(self, given: Any, asynchronous: bool) -> Any:
        """The SDK's HTTP client, recorded: `given`, the simulator's, or the SDK's default."""
        if given is None and self.simulator is not None:
            # the simulator's own transport, wrapped directly (no second client in between)
            sim = self.simulator
            if asynchronous:
                return httpx2.AsyncClient(
                    transport=self.recorder.wrap_transport(sim.async_transport())
                )
            return httpx2.Client(transport=self.recorder.wrap_transport(sim.transport()))
        if given is None and asynchronous:
            given = anthropic.DefaultAsyncHttpxClient()
        return recording_http_client(self.recorder, given)

    def _scope(self, kwargs: dict[str, Any], session: str | None, stream: bool) -> CallScope:
        params = _body_params(kwargs)
        return self.recorder.call(
            session=session, params=params, stream=stream or bool(params.get("stream"))
        )

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


def _returned(scope: CallScope, result: Any) -> None:
    """After the SDK returned: the record keeps the SDK's Message, and a ledger failure of a
    successful call reaches its caller (carrying that Message)."""
    record = scope.record
    if record is not None and isinstance(result, anthropic.types.Message):
        record.message = result
    scope.raise_recorder_error(result)


# -- the sync client --------------------------------------------------------------------------------


class CachingMessages:
    """The SDK's `messages` resource; `create` and `stream` are recorded under a call scope (other
    attributes are the SDK's own, and their `/v1/messages` calls are recorded by the transport)."""

    def __init__(self, owner: _ClientBase, resource: Messages) -> None:
        self._owner = owner
        self._resource = resource

    def create(self, **kwargs: Any) -> Any:
        scope = self._owner._scope(kwargs, None, False)
        with scope:
            result = self._resource.create(**kwargs)
        _returned(scope, result)
        return result

    def stream(self, **kwargs: Any) -> Any:
        scope = self._owner._scope(kwargs, None, True)
        return _ScopedStream(self._resource.stream(**kwargs), scope)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    def __repr__(self) -> str:
        return f"CachingMessages({self._resource!r})"


class _ScopedStream:
    """`messages.stream(...)`'s context manager with the call scope around its request; the scope
    closes when the `with` block does, with the exception that left it."""

    def __init__(self, manager: Any, scope: CallScope) -> None:
        self._manager = manager
        self._scope = scope

    def __enter__(self) -> Any:
        token = self._scope.activate()
        try:
            return self._manager.__enter__()
        except BaseException as error:
            self._scope.close(error)
            raise
        finally:
            self._scope.deactivate(token)

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> Any:
        try:
            return self._manager.__exit__(kind, error, tb)
        finally:
            self._scope.close(error)
            if error is None:
                self._scope.raise_recorder_error()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


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
        Anything else `anthropic.Anthropic` accepts (`max_retries`, `timeout`, ...). An
        `http_client` keeps its transport, hooks and proxies, and is recorded through.

    Attributes
    ----------
    messages:
        The SDK's messages resource (same signatures and return types), recorded.
    sdk:
        The underlying `anthropic.Anthropic`; other resources (`client.models`, ...) are forwarded.
    recorder:
        The `cachescope.recorder.Recorder` at the SDK's transport.
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
        key = self._setup(
            backend,
            api_key,
            simulator,
            ledger,
            clock,
            diagnostics,
            store_text,
            sdk_kwargs.get("max_retries", anthropic.DEFAULT_MAX_RETRIES),
        )
        sdk_kwargs["http_client"] = self._http_client(sdk_kwargs.get("http_client"), False)
        self.sdk = anthropic.Anthropic(api_key=key, **sdk_kwargs)
        self.messages: Messages = cast("Messages", CachingMessages(self, self.sdk.messages))

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


class AsyncCachingMessages:
    """The SDK's async `messages` resource, recorded like `CachingMessages`."""

    def __init__(self, owner: _ClientBase, resource: AsyncMessages) -> None:
        self._owner = owner
        self._resource = resource

    async def create(self, **kwargs: Any) -> Any:
        scope = self._owner._scope(kwargs, None, False)
        with scope:
            result = await self._resource.create(**kwargs)
        _returned(scope, result)
        return result

    def stream(self, **kwargs: Any) -> Any:
        scope = self._owner._scope(kwargs, None, True)
        return _AsyncScopedStream(self._resource.stream(**kwargs), scope)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    def __repr__(self) -> str:
        return f"AsyncCachingMessages({self._resource!r})"


class _AsyncScopedStream:
    """`_ScopedStream` for `async with`."""

    def __init__(self, manager: Any, scope: CallScope) -> None:
        self._manager = manager
        self._scope = scope

    async def __aenter__(self) -> Any:
        token = self._scope.activate()
        try:
            return await self._manager.__aenter__()
        except BaseException as error:
            self._scope.close(error)
            raise
        finally:
            self._scope.deactivate(token)

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> Any:
        try:
            return await self._manager.__aexit__(kind, error, tb)
        finally:
            self._scope.close(error)
            if error is None:
                self._scope.raise_recorder_error()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


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
        key = self._setup(
            backend,
            api_key,
            simulator,
            ledger,
            clock,
            diagnostics,
            store_text,
            sdk_kwargs.get("max_retries", anthropic.DEFAULT_MAX_RETRIES),
        )
        sdk_kwargs["http_client"] = self._http_client(sdk_kwargs.get("http_client"), True)
        self.sdk = anthropic.AsyncAnthropic(api_key=key, **sdk_kwargs)
        self.messages: AsyncMessages = cast(
            "AsyncMessages", AsyncCachingMessages(self, self.sdk.messages)
        )

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
