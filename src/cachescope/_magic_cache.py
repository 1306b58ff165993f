"""The `%cache` subcommands: each reads its words, checks them and shows or changes one thing."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from cachescope.magics import _ipy

if TYPE_CHECKING:
    from cachescope.magics import CachedPrompt


def stats(magics: CachedPrompt, rest: list[str]) -> None:

    if len(rest) > 1:
        raise UsageError("usage: %cache stats [SESSION]")
    if rest:
        magics._known_session(rest[0])
    _ipy().display(magics.ledger.summary(session=rest[0] if rest else None))


def sessions(magics: CachedPrompt, rest: list[str]) -> None:

    from cachescope.views import SessionsTable

    if rest:
        raise UsageError("usage: %cache sessions")
    names = list(
        dict.fromkeys([*magics._sessions, *(r.session for r in magics.ledger.records if r.session)])
    )
    _ipy().display(SessionsTable({name: magics.ledger.summary(session=name) for name in names}))


def diff(magics: CachedPrompt, rest: list[str]) -> None:

    usage = "usage: %cache diff [SESSION] [N M]  (N, M: call numbers, as in the dashboard)"
    name = None
    if rest and not rest[0].isdigit():
        name, rest = rest[0], rest[1:]
    if len(rest) not in (0, 2) or not all(word.isdigit() for word in rest):
        raise UsageError(usage)
    state = magics._known_session(name)
    records = state.records()
    if rest:
        first, second = int(rest[0]), int(rest[1])
    else:
        first, second = len(records) - 1, len(records)
    if len(records) < 2 or not (1 <= first <= len(records) and 1 <= second <= len(records)):
        raise UsageError(
            f"session {state.name!r} has {len(records)} call(s): pick two numbers "
            f"between 1 and {len(records)}."
        )
    _ipy().display(state.diff_calls(records[first - 1], records[second - 1]))


def reset(magics: CachedPrompt, rest: list[str]) -> None:
    if len(rest) > 1:
        raise UsageError("usage: %cache reset [SESSION]")
    states = [magics._known_session(rest[0])] if rest else list(magics._sessions.values())
    for state in states:
        if state.session is not None:
            state.session.reset()
        state.previous = None
    names = ", ".join(repr(s.name) for s in states) or "no sessions"
    print(f"cachescope: reset {names}; the ledger keeps every record.")


def export(magics: CachedPrompt, rest: list[str]) -> None:
    from cachescope._magic_run import export_ledger

    if len(rest) != 1:
        raise UsageError("usage: %cache export PATH  (PATH ends in .csv or .jsonl)")
    try:
        count = export_ledger(magics.ledger, os.path.expanduser(rest[0]))
    except ValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write {rest[0]!r}: {error.strerror or error}") from None
    print(f"cachescope: wrote {count:,} records to {rest[0]}")


def clock(magics: CachedPrompt, rest: list[str]) -> None:
    from cachescope._magic_run import parse_duration

    if len(rest) < 2 or rest[0] != "advance":
        raise UsageError("usage: %cache clock advance DURATION  (e.g. 90s, 6m, 1h 30m)")
    try:
        seconds = parse_duration(rest[1:])
    except ValueError as error:
        raise UsageError(f"{error}; write e.g. 90s, 6m or 1h 30m.") from None
    client = magics.client()
    if client.simulator is None or not callable(getattr(client.clock, "advance", None)):
        raise UsageError(
            f"%cache clock works only with the simulator; this kernel's backend is "
            f"{client.backend!r} (real time cannot be moved)."
        )
    client.clock.advance(seconds)
    print(f"cachescope: simulator clock moved {seconds:g} s forward.")


def dashboard(magics: CachedPrompt, rest: list[str]) -> None:
    from cachescope.views import SessionDashboard

    if len(rest) > 1:
        raise UsageError("usage: %cache dashboard [SESSION]")
    state = magics._known_session(rest[0] if rest else None)
    if state.dashboard is None:
        state.dashboard = SessionDashboard(
            state.name, state.records(), static_chart=magics.static_chart
        )
    magics._display_dashboard(state)


COMMANDS: dict[str, Callable[[CachedPrompt, list[str]], None]] = {
    "stats": stats,
    "sessions": sessions,
    "diff": diff,
    "reset": reset,
    "export": export,
    "clock": clock,
    "dashboard": dashboard,
}
