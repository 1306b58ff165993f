"""Finding transcript folders and naming projects, sessions and agents as Claude Code does."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachescope import CachescopeError
from cachescope.logs import default_roots, find_files


def test_claude_config_dir_is_a_comma_list_with_tilde_and_projects_suffix() -> None:
    roots = default_roots({"CLAUDE_CONFIG_DIR": "~/a, /b/projects,", "HOME": "/home/u"})
    assert roots == [Path("~/a").expanduser(), Path("/b")]


def test_without_claude_config_dir_xdg_then_home() -> None:
    assert default_roots({"HOME": "/home/u"}) == [
        Path("/home/u/.config/claude"),
        Path("/home/u/.claude"),
    ]
    assert default_roots({"HOME": "/home/u", "XDG_CONFIG_HOME": "/x"}) == [
        Path("/x/claude"),
        Path("/home/u/.claude"),
    ]


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def test_main_chain_nested_and_old_style_subagent_files_are_named(tmp_path: Path) -> None:
    projects = tmp_path / "projects" / "-home-user-app"
    _touch(projects / "sess1.jsonl")
    _touch(projects / "sess1" / "subagents" / "agent-a1.jsonl")
    _touch(projects / "agent-a2.jsonl")
    named = {(Path(f.path).name, f.project, f.session, f.agent) for f in find_files([tmp_path])}
    assert named == {
        ("sess1.jsonl", "-home-user-app", "sess1", ""),
        ("agent-a1.jsonl", "-home-user-app", "sess1", "agent-a1"),
        ("agent-a2.jsonl", "-home-user-app", "", "agent-a2"),  # session read from its lines
    }


def test_the_default_folders_come_from_claude_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "one" / "projects" / "p" / "s.jsonl")
    _touch(tmp_path / "two" / "projects" / "q" / "t.jsonl")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{tmp_path / 'one'},{tmp_path / 'two' / 'projects'}")
    assert sorted(f.project for f in find_files()) == ["p", "q"]


def test_a_missing_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(CachescopeError, match="No such file or folder"):
        find_files([tmp_path / "nope"])
