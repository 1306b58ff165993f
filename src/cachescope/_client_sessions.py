"""Sessions of a caching client: named conversations over a `Prompt`, with append-only history.

`Session.send` renders the prompt with the history and the new user turn, sends it through the
client's SDK inside a call scope named after the session (so the recorder chains its diagnostics
and files its records under it), and appends the reply. Public through `cachescope.client`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cachescope.ledger import CallRecord
from cachescope.recorder import CallScope

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.client import _ClientBase

__all__ = ["AsyncSession", "Session"]


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
        self.client.recorder.reset_chain(self.name)

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

    def _returned(
        self, params: Mapping[str, Any], scope: CallScope, final: Any, keep_history: bool
    ) -> CallRecord:
        """The call's record, with the SDK's Message; the reply joins the history."""
        record = scope.record
        assert record is not None
        if final is not None:
            record.message = final
        scope.raise_recorder_error(final)
        if keep_history:
            self._append(params, record)
        return record

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
        kwargs = dict(params)
        scope = self.client._scope(kwargs, self.name, stream)
        messages = self.client.sdk.messages  # type: ignore[attr-defined]
        final: Any = None
        try:
            with scope:
                if stream:
                    with messages.stream(**kwargs) as events:
                        for text in events.text_stream:
                            if on_text is not None:
                                on_text(text)
                        final = events.get_final_message()
                else:
                    final = messages.create(**kwargs)
        finally:
            if scope.record is not None:
                self._records.append(scope.record)
        return self._returned(params, scope, final, keep_history)


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
        kwargs = dict(params)
        scope = self.client._scope(kwargs, self.name, stream)
        messages = self.client.sdk.messages  # type: ignore[attr-defined]
        final: Any = None
        try:
            with scope:
                if stream:
                    async with messages.stream(**kwargs) as events:
                        async for text in events.text_stream:
                            if on_text is not None:
                                on_text(text)
                        final = await events.get_final_message()
                else:
                    final = await messages.create(**kwargs)
        finally:
            if scope.record is not None:
                self._records.append(scope.record)
        return self._returned(params, scope, final, keep_history)
