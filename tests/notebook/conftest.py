"""Fixtures for the magics tests: an IPython shell with the extension loaded, on the simulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from cachescope.client import CachingClient
from cachescope.sim import Simulator, VirtualClock

#: A stable layer long enough to be cached (above every model's minimum).
STABLE = "You are Aura, a careful assistant who answers in plain words. " * 330


def cell(stable: str = STABLE, user: str = "What changed since yesterday?", **layers: str) -> str:
    """A cell body with a stable layer, optional extra layers and a user turn."""
    parts = ["@stable", stable]
    for name, text in layers.items():
        parts += [f"@{name}" if name in ("conversation", "dynamic") else f"@system {name}", text]
    parts += ["@user", user]
    return "\n".join(parts)


@pytest.fixture(scope="session")
def ip() -> InteractiveShell:
    return InteractiveShell.instance()


@pytest.fixture(autouse=True)
def fresh_config(ip: InteractiveShell) -> Iterator[None]:
    """`%config CachedPrompt.*` lives in the shell's config: start and end each test without it."""
    ip.config.pop("CachedPrompt", None)
    yield
    ip.config.pop("CachedPrompt", None)


@pytest.fixture
def magics(ip: InteractiveShell) -> Iterator[Any]:
    """The extension loaded on a fresh simulator with a virtual clock; unloaded afterwards."""
    ip.run_line_magic("load_ext", "cachescope")
    registered = ip.magics_manager.registry["CachedPrompt"]
    registered.static_chart = False  # the PNG fallback has its own test
    registered.use(CachingClient(backend="sim", clock=VirtualClock(start=1_800_000_000.0)))
    yield registered
    ip.run_line_magic("unload_ext", "cachescope")
    for name in ("_", "reply", "out"):
        ip.user_ns.pop(name, None)


@pytest.fixture
def use_simulator(magics: Any) -> Callable[..., CachingClient]:
    """Swap in a client on a simulator built with the given options (responder, faults)."""

    def swap(**options: Any) -> CachingClient:
        simulator = Simulator(clock=VirtualClock(start=1_800_000_000.0), **options)
        client = CachingClient(backend="sim", simulator=simulator)
        magics.use(client)
        return client

    return swap


@pytest.fixture
def run(ip: InteractiveShell) -> Callable[..., Any]:
    """Run `%%cached_prompt LINE` on BODY; returns the captured outputs."""

    def go(line: str, body: str) -> Any:
        with capture_output() as captured:
            ip.run_cell_magic("cached_prompt", line, body)
        return captured

    return go


def html_of(captured: Any) -> list[str]:
    return [o.data["text/html"] for o in captured.outputs if "text/html" in o.data]


def last_call(captured: Any) -> Any:
    """The last published state of the call snapshot (the final update)."""
    calls = [o for o in captured.outputs if "cachescope" in (o.metadata or {})]
    return calls[-1]
