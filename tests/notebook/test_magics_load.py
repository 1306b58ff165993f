"""`%load_ext cachescope` / `%unload_ext cachescope`, help and configuration."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from conftest import cell
from IPython.core.interactiveshell import InteractiveShell

from cachescope.magics import CachedPrompt


def test_load_ext_registers_cached_prompt_and_cache(ip: InteractiveShell, magics: Any) -> None:
    assert ip.find_cell_magic("cached_prompt") is not None
    assert ip.find_line_magic("cache") is not None


def test_unload_ext_removes_magics_hook_and_config(ip: InteractiveShell) -> None:
    ip.run_line_magic("load_ext", "cachescope")
    ip.run_line_magic("unload_ext", "cachescope")
    assert ip.find_cell_magic("cached_prompt") is None
    assert ip.find_line_magic("cache") is None
    assert "CachedPrompt" not in ip.magics_manager.registry
    assert not any(isinstance(c, CachedPrompt) for c in ip.configurables)
    hooks = ip.events.callbacks["post_run_cell"]
    assert not any(isinstance(getattr(h, "__self__", None), CachedPrompt) for h in hooks)


def test_unload_ext_closes_the_dashboard_widgets(ip: InteractiveShell, run: Any) -> None:
    ip.run_line_magic("load_ext", "cachescope")
    magics = ip.magics_manager.registry["CachedPrompt"]
    magics.static_chart = False
    run("--session aura", cell())
    widget = magics.session_state("aura").dashboard.widget
    ip.run_line_magic("unload_ext", "cachescope")
    assert widget.comm is None


def test_load_ext_twice_registers_once(ip: InteractiveShell) -> None:
    ip.run_line_magic("load_ext", "cachescope")
    ip.run_line_magic("reload_ext", "cachescope")
    try:
        hooks = ip.events.callbacks["post_run_cell"]
        assert sum(isinstance(getattr(h, "__self__", None), CachedPrompt) for h in hooks) == 1
    finally:
        ip.run_line_magic("unload_ext", "cachescope")


def test_load_ext_imports_no_client_or_chart_library() -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'cachescope')\n"
        "print(sorted(m for m in ('anthropic', 'altair', 'ipywidgets', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_option(ip: InteractiveShell, magics: Any) -> None:
    doc = ip.find_cell_magic("cached_prompt").__doc__
    for option in (
        "--model",
        "--session",
        "--max-tokens",
        "--ttl",
        "--backend",
        "--dry-run",
        "--no-history",
        "--stream",
        "--no-stream",
        "--out",
        "--quiet",
    ):
        assert option in doc


def test_every_config_trait_has_help() -> None:
    traits = CachedPrompt.class_traits(config=True)
    assert set(traits) >= {
        "model",
        "max_tokens",
        "ttl",
        "backend",
        "ledger_path",
        "stream",
        "dashboard",
    }
    assert all(trait.help for trait in traits.values())


def test_ledger_path_config_writes_calls_to_that_file(
    ip: InteractiveShell, run: Any, tmp_path: Any
) -> None:
    ip.run_line_magic("load_ext", "cachescope")
    try:
        path = tmp_path / "calls.ledger.jsonl"
        ip.run_line_magic("config", f"CachedPrompt.ledger_path = {str(path)!r}")
        ip.run_line_magic("config", "CachedPrompt.backend = 'sim'")
        run("--quiet", cell())
        assert len(path.read_text().splitlines()) == 1
    finally:
        ip.run_line_magic("unload_ext", "cachescope")
