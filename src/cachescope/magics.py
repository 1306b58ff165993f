"""IPython magics: `%load_ext cachescope`, `%%cached_prompt` and `%cache`.

A thin skin over the Python API (DESIGN.md): the cell body is parsed by `cachescope.syntax`, sent
through `cachescope.client` (via `_magic_run`), checked by `cachescope.lint` and
`cachescope.compare`, and shown by `cachescope.views`. The magic only wires them to IPython.

Which errors show how:

* the user's mistakes — cell syntax, undefined names, bad options, a prompt the API would refuse —
  raise IPython's `UsageError`: one message with the cell line number, no traceback;
* a failed API call raises `CallFailedError`, shown as a short formatted message with the error
  type (no traceback); the call is already in the ledger and nothing recorded before is lost.

Defaults are traitlets on `CachedPrompt` (`%config CachedPrompt.model = "claude-haiku-4-5"`).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core import magic_arguments as _magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Enum, Integer, Unicode

from cachescope._errors import CachescopeError, CellSyntaxError, PromptError
from cachescope._magic_args import Once as _Once
from cachescope._magic_args import identifier as _identifier
from cachescope._magic_args import positive as _positive

if TYPE_CHECKING:  # pragma: no cover
    from cachescope._magic_run import SessionState
    from cachescope.client import CachingClient
    from cachescope.ledger import CallRecord, Ledger
    from cachescope.syntax import Cell
    from cachescope.views import CallView

__all__ = [
    "CachedPrompt",
    "CallFailedError",
    "load_ipython_extension",
    "unload_ipython_extension",
]

# IPython's helpers are untyped; typed aliases keep mypy strict about the rest of the module.
_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
argument: Callable[..., _Decorator] = _magic_arguments.argument
magic_arguments: Callable[..., _Decorator] = _magic_arguments.magic_arguments
parse_argstring: Callable[..., Any] = _magic_arguments.parse_argstring

DEFAULT_SESSION = "default"
#: Seconds between two refreshes of the snapshot while a reply streams.
STREAM_REFRESH = 0.1


class CallFailedError(CachescopeError):
    """A `%%cached_prompt` call failed at the API (or its record could not be written).

    Shown in a notebook as a formatted message with the error type and no traceback.
    """

    def __init__(self, error: BaseException, *, recorded: bool, ledger_size: int) -> None:
        self.error = error
        self.error_type = type(error).__name__
        status = getattr(error, "status_code", None)
        self.status = status if isinstance(status, int) else None
        where = f" (HTTP {self.status})" if self.status else ""
        kept = (
            f"The failed call is recorded in the ledger ({ledger_size:,} records kept)."
            if recorded
            else f"The ledger keeps its {ledger_size:,} earlier records."
        )
        super().__init__(f"{self.error_type}{where}: {error}\n{kept}")

    def _render_traceback_(self) -> list[str]:
        """IPython shows these lines instead of a traceback."""
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def _syntax_error(error: CellSyntaxError) -> UsageError:
    # The body starts on the cell's second line, below `%%cached_prompt`.
    where = f"cell line {error.line + 1}: " if error.line else ""
    shown = f"\n    {error.text}" if error.text else ""
    fix = f"\n{error.fix}" if error.fix else ""
    return UsageError(f"{where}{error.message}{shown}{fix}")


@magics_class
class CachedPrompt(Magics):
    """`%%cached_prompt` and `%cache`, with defaults settable through `%config CachedPrompt.*`."""

    model = Unicode(
        None,
        allow_none=True,
        help="Model of %%cached_prompt calls (None: the model table's default).",
    ).tag(config=True)
    max_tokens = Integer(1024, help="max_tokens of each call.").tag(config=True)
    ttl = Enum(
        ["5m", "1h"],
        default_value=None,
        allow_none=True,
        help="TTL of cached layers whose header gives none (None: per layer, 5m by default).",
    ).tag(config=True)
    backend = Enum(
        ["auto", "sim", "anthropic"],
        default_value="auto",
        help="auto: the real API when ANTHROPIC_API_KEY is set, else the offline simulator.",
    ).tag(config=True)
    ledger_path = Unicode(
        None,
        allow_none=True,
        help="JSONL file the ledger appends to (None: keep records in memory).",
    ).tag(config=True)
    stream = Bool(True, help="Stream replies, updating the snapshot as text arrives.").tag(
        config=True
    )
    dashboard = Bool(True, help="Show one live dashboard per session.").tag(config=True)
    static_chart = Bool(
        True,
        help="Add a PNG of the charts to each dashboard, for viewers without widgets.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._ledger: Ledger | None = None
        self._ledger_for: str | None = None
        self._clients: dict[str, CachingClient] = {}
        self._sessions: dict[str, SessionState] = {}

    @property
    def _shell(self) -> Any:
        return self.shell

    # ---- the client and the sessions -------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        """The ledger every call of this kernel goes to (one, whatever the backend)."""
        from cachescope.ledger import Ledger

        if self._ledger is None or self._ledger_for != self.ledger_path:
            path = os.path.expanduser(self.ledger_path) if self.ledger_path else None
            self._ledger = Ledger(path)
            self._ledger_for = self.ledger_path
            self._clients.clear()  # clients write to the ledger they were made with
        return self._ledger

    def client(self, backend: str | None = None) -> CachingClient:
        """The client for `backend` (the configured one by default), made on first use.

        The simulator runs on a `VirtualClock`, so `%cache clock advance` can show expiry.
        """
        from cachescope.client import CachingClient, resolve_backend
        from cachescope.sim import VirtualClock

        wanted = backend or self.backend
        ledger = self.ledger
        client = self._clients.get(wanted)
        if client is None:
            try:
                # The simulator runs on a virtual clock so `%cache clock advance` can move it.
                if resolve_backend(wanted) == "sim":
                    client = CachingClient(backend="sim", ledger=ledger, clock=VirtualClock())
                else:
                    client = CachingClient(backend="anthropic", ledger=ledger)
            except CachescopeError as error:
                raise UsageError(str(error)) from None
            except Exception as error:  # the SDK refusing its configuration (e.g. no key)
                raise UsageError(f"cannot start the {wanted!r} client: {error}") from None
            self._clients[wanted] = client
        return client

    def use(self, client: CachingClient) -> None:
        """Send later calls through `client` (e.g. one on a simulator with a scripted responder
        or injected faults); its ledger becomes this kernel's ledger.

        Reach it with `get_ipython().magics_manager.registry["CachedPrompt"].use(client)`.
        """
        self._ledger, self._ledger_for = client.ledger, self.ledger_path
        self._clients = {self.backend: client, client.backend: client}

    def session_state(self, name: str) -> SessionState:
        from cachescope._magic_run import SessionState

        state = self._sessions.get(name)
        if state is None:
            state = self._sessions[name] = SessionState(name)
        return state

    def _known_session(self, name: str | None) -> SessionState:
        if name is None:
            if not self._sessions:
                raise UsageError("No sessions yet: run a %%cached_prompt cell first.")
            name = next(reversed(self._sessions))
        state = self._sessions.get(name)
        if state is None:
            known = ", ".join(repr(n) for n in self._sessions) or "none"
            raise UsageError(f"No session {name!r} in this kernel (sessions: {known}).")
        return state

    # ---- %%cached_prompt -------------------------------------------------------------------
    @magic_arguments()
    @argument("--model", "-m", action=_Once, help="Model (default: CachedPrompt.model).")
    @argument("--session", "-s", action=_Once, help=f"Session name (default: {DEFAULT_SESSION!r}).")
    @argument(
        "--max-tokens",
        action=_Once,
        type=_positive,
        dest="max_tokens",
        help="max_tokens (default: CachedPrompt.max_tokens).",
    )
    @argument(
        "--ttl",
        action=_Once,
        choices=("5m", "1h"),
        help="TTL of cached layers whose header gives none.",
    )
    @argument(
        "--backend",
        action=_Once,
        choices=("auto", "sim", "anthropic"),
        help="Where the call goes (default: CachedPrompt.backend).",
    )
    @argument(
        "--dry-run",
        action=_Once,
        flag_value=True,
        dest="dry_run",
        default=False,
        help="Render, lint and predict usage from the session's cache state; send nothing.",
    )
    @argument(
        "--no-history",
        action=_Once,
        flag_value=True,
        dest="no_history",
        default=False,
        help="Send without the session's earlier turns, and do not add this one.",
    )
    @argument(
        "--stream",
        action=_Once,
        flag_value=True,
        dest="stream",
        default=None,
        help="Stream the reply (default: CachedPrompt.stream).",
    )
    @argument(
        "--no-stream",
        action=_Once,
        flag_value=False,
        dest="stream",
        help="Wait for the whole reply.",
    )
    @argument("--out", "-o", action=_Once, type=_identifier, help="Store the reply in VAR too.")
    @argument(
        "--quiet",
        "-q",
        action=_Once,
        flag_value=True,
        dest="quiet",
        default=False,
        help="Show nothing in this cell (the dashboard still updates).",
    )
    @cell_magic
    def cached_prompt(self, line: str, cell: str) -> None:
        """Send a layered prompt through the caching client and show what the cache did.

        The body uses the cell syntax (`@stable`, `@conversation`, `@dynamic`, `@tools`,
        `@system NAME`, `@user`, `@assistant`, each with optional `ttl=5m|1h|none`);
        `{{ name }}` is filled from the notebook's variables, once. The reply is stored in `_`
        (and in `--out VAR`).
        """
        args = parse_argstring(self.cached_prompt, line)
        from cachescope import syntax

        try:
            parsed = syntax.parse(
                cell,
                self._shell.user_ns,
                model=args.model or self.model,
                default_ttl=args.ttl or self.ttl,
            )
        except CellSyntaxError as error:
            raise _syntax_error(error) from None
        name = args.session or DEFAULT_SESSION
        client = self.client(args.backend)
        state = self.session_state(name)
        session = client.session(name, parsed.prompt)
        state.client, state.session = client, session
        history = None if args.no_history else list(session.history)
        max_tokens = self.max_tokens if args.max_tokens is None else args.max_tokens
        try:
            params = parsed.render(history, max_tokens=max_tokens)
        except PromptError as error:
            raise UsageError(f"the prompt cannot be sent: {error}") from None
        findings = _lint(params, state.previous[1] if state.previous else None)
        if args.dry_run:
            self._dry_run(state, client, parsed, params, findings, args)
            return
        stream = self.stream if args.stream is None else args.stream
        self._send(state, client, parsed, params, findings, args, stream=stream)

    def _dry_run(
        self,
        state: SessionState,
        client: CachingClient,
        parsed: Cell,
        params: dict[str, Any],
        findings: list[Any],
        args: argparse.Namespace,
    ) -> None:
        from cachescope._magic_run import predict_record
        from cachescope.views import CallView

        record = predict_record(client, params, session=state.name)
        diff = state.diff(record, params) if record is not None else None
        note = (
            "first call of this session"
            if state.previous is None
            else "prediction needs the simulator (the real API keeps its cache state)"
        )
        view = CallView(
            record=record,
            diff=diff,
            diff_note="" if diff is not None else note,
            findings=findings,
            cell_line=parsed.cell_line,
            backend=client.backend,
            session=state.name,
            model=parsed.prompt.model,
            dry_run=True,
        )
        if record is None:
            view.diff_note = "usage prediction needs the simulator; the real API was not called"
        if not args.quiet:
            self._display(view)
        self._store(view, args.out)

    def _send(
        self,
        state: SessionState,
        client: CachingClient,
        parsed: Cell,
        params: dict[str, Any],
        findings: list[Any],
        args: argparse.Namespace,
        *,
        stream: bool,
    ) -> None:
        from anthropic import APIError

        from cachescope._magic_run import send_cell
        from cachescope.ledger import LedgerError
        from cachescope.views import CallView

        assert state.session is not None
        view = CallView(
            streaming=stream,
            findings=findings,
            cell_line=parsed.cell_line,
            backend=client.backend,
            session=state.name,
            model=parsed.prompt.model,
        )
        display_id = None if args.quiet else self._display(view)
        chunks: list[str] = []
        last_refresh = [time.monotonic()]

        def on_text(text: str) -> None:
            chunks.append(text)
            now = time.monotonic()
            if display_id is not None and now - last_refresh[0] >= STREAM_REFRESH:
                last_refresh[0] = now
                view.reply = "".join(chunks)
                self._display(view, display_id)

        before = len(state.session.records)
        try:
            record = send_cell(
                state.session,
                params,
                stream=stream,
                on_text=on_text,
                keep_history=not args.no_history,
            )
        except (APIError, LedgerError) as error:
            failed = state.session.records[before:]
            view.streaming = False
            view.reply = "".join(chunks)
            view.record = failed[-1] if failed else None
            if display_id is not None:
                self._display(view, display_id)
            if failed:
                self._show_in_dashboard(state, failed[-1], None, quiet=args.quiet)
            raise CallFailedError(
                error, recorded=bool(failed), ledger_size=len(client.ledger)
            ) from None
        diff = state.diff(record, params)
        state.remember(record, params)
        view.record = record
        view.streaming = False
        view.reply = _reply_text(record) or "".join(chunks)
        view.diff = diff
        view.diff_note = "first call of this session" if diff is None else ""
        if display_id is not None:
            self._display(view, display_id)
        self._show_in_dashboard(state, record, diff, quiet=args.quiet)
        self._store(record.message, args.out)

    # ---- showing -------------------------------------------------------------------------
    def _display(self, view: CallView, display_id: str | None = None) -> str:

        bundle, metadata = view._repr_mimebundle_()
        if display_id is None:
            display_id = f"cachescope-call-{uuid.uuid4().hex}"
            _ipy().display(bundle, raw=True, metadata=metadata, display_id=display_id)
        else:
            _ipy().update_display(bundle, raw=True, metadata=metadata, display_id=display_id)
        return display_id

    def _show_in_dashboard(
        self, state: SessionState, record: CallRecord, diff: Any, *, quiet: bool
    ) -> None:
        if not self.dashboard:
            return
        if state.dashboard is None:
            from cachescope.views import SessionDashboard

            earlier = [r for r in state.records() if r is not record]
            state.dashboard = SessionDashboard(state.name, earlier, static_chart=self.static_chart)
            state.dashboard.add(record, diff)
            if not quiet:
                self._display_dashboard(state)
            return
        state.dashboard.add(record, diff)
        state.dashboard_stale = True

    def _display_dashboard(self, state: SessionState) -> None:

        assert state.dashboard is not None
        state.dashboard_id = f"cachescope-dashboard-{uuid.uuid4().hex}"
        _ipy().display(state.dashboard._repr_mimebundle_(), raw=True, display_id=state.dashboard_id)
        state.dashboard_stale = False

    def refresh_static_charts(self, *_: Any) -> None:
        """After a cell: refresh the PNG fallback of dashboards that changed (post_run_cell)."""

        for state in self._sessions.values():
            if state.dashboard_stale and state.dashboard is not None and state.dashboard_id:
                state.dashboard_stale = False
                if self.static_chart:
                    _ipy().update_display(
                        state.dashboard._repr_mimebundle_(),
                        raw=True,
                        display_id=state.dashboard_id,
                    )

    def _store(self, value: Any, out: str | None) -> None:
        """Put the reply in `_` (and `Out`), and in `out` when given, without displaying it."""
        if value is None:
            return
        self._shell.displayhook.update_user_ns(value)
        if out:
            self._shell.user_ns[out] = value

    # ---- %cache --------------------------------------------------------------------------
    @line_magic
    def cache(self, line: str) -> None:
        """Inspect and steer the caching client of this kernel.

        %cache stats [S]          ledger summary (of session S, or of every call)
        %cache sessions           one row per session
        %cache diff [S] [N M]     where the prefix broke between calls N and M (default: last two)
        %cache reset [S]          start session S (or every session) over; the ledger is kept
        %cache export PATH        write the ledger as CSV (.csv) or JSON lines (.jsonl)
        %cache clock advance 6m   move the simulator's clock (e.g. 90s, 6m, 1h 30m)
        %cache dashboard [S]      show session S's live dashboard again
        """
        words = line.split()
        if not words:
            raise UsageError(
                "%cache needs a subcommand: stats, sessions, diff, reset, export, clock, dashboard."
            )
        command, rest = words[0], words[1:]
        from cachescope._magic_cache import COMMANDS

        handler = COMMANDS.get(command)
        if handler is None:
            raise UsageError(
                f"unknown %cache subcommand {command!r}; use stats, sessions, diff, reset, "
                "export, clock or dashboard."
            )
        handler(self, rest)

    # ---- unloading -----------------------------------------------------------------------
    def close(self) -> None:
        """Close dashboards and clients (called by `%unload_ext`)."""
        for state in self._sessions.values():
            if state.dashboard is not None:
                state.dashboard.close()
                state.dashboard = None
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._sessions.clear()


def _ipy() -> Any:
    """`IPython.display` (untyped), imported when first needed."""
    import IPython.display

    return IPython.display


def _lint(params: dict[str, Any], previous: dict[str, Any] | None) -> list[Any]:
    from cachescope import lint

    return list(lint(params, previous=previous))


def _reply_text(record: CallRecord) -> str:
    message = record.message
    if message is None:
        return ""
    parts = []
    for block in getattr(message, "content", None) or ():
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        elif getattr(block, "type", None) == "tool_use":
            parts.append(f"[tool_use {getattr(block, 'name', '')}]")
    return "".join(parts)


_LOADED: dict[int, CachedPrompt] = {}


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext cachescope`: register `%%cached_prompt`, `%cache` and one post-run hook."""
    if id(ipython) in _LOADED:
        return
    magics = CachedPrompt(shell=ipython)
    ipython.register_magics(magics)
    ipython.events.register("post_run_cell", magics.refresh_static_charts)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext cachescope`: remove the magics, the hook, the widgets and the clients."""
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    try:
        ipython.events.unregister("post_run_cell", magics.refresh_static_charts)
    except ValueError:
        pass
    manager = ipython.magics_manager
    for kind, names in (("cell", ("cached_prompt",)), ("line", ("cache",))):
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(type(magics).__name__, None)
    ipython.configurables[:] = [c for c in ipython.configurables if c is not magics]
    magics.close()
