"""Finding Claude Code transcript folders and naming each file's project, session and agent.

Follows Claude Code and the reference tool: every entry of `CLAUDE_CONFIG_DIR` (comma-separated,
`~` expanded, a trailing `/projects` accepted) replaces the defaults `$XDG_CONFIG_HOME/claude`
(default `~/.config/claude`) and `~/.claude`; under each root's `projects/`, every `*.jsonl`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cachescope._errors import CachescopeError


@dataclass(frozen=True)
class SourceFile:
    """One file to read, with the names its rows get.

    `session` is empty for an old-style `agent-<id>.jsonl` beside the session files: its parent
    session is then read from the lines' `sessionId`.
    """

    path: str
    project: str
    session: str
    agent: str


def default_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The Claude configuration folders to search, in the order Claude Code uses them."""
    env = os.environ if environ is None else environ
    configured = env.get("CLAUDE_CONFIG_DIR", "").strip()
    if configured:
        roots = []
        for entry in configured.split(","):
            entry = entry.strip()
            if not entry:
                continue
            path = Path(os.path.expanduser(entry))
            if path.name == "projects":
                path = path.parent
            roots.append(path)
        return roots
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    xdg = env.get("XDG_CONFIG_HOME") or str(home / ".config")
    return [Path(xdg) / "claude", home / ".claude"]


def _name_file(path: Path, projects_dir: Path | None) -> SourceFile:
    if projects_dir is None:
        return SourceFile(str(path), path.parent.name, path.stem, "")
    parts = path.relative_to(projects_dir).parts
    stem = path.stem
    agent = stem if stem.startswith("agent-") else ""
    if len(parts) == 1:  # a transcript directly under projects/: no project folder
        return SourceFile(str(path), "", "" if agent else stem, agent)
    project = parts[0]
    if len(parts) == 2:
        # projects/<project>/<session>.jsonl, or an old-style agent file beside it
        return SourceFile(str(path), project, "" if agent else stem, agent)
    # projects/<project>/<session>/subagents/agent-<id>.jsonl (and any deeper nesting)
    return SourceFile(str(path), project, parts[1], agent or stem)


def _walk(folder: Path, visited: list[str] | None = None) -> Iterable[tuple[str, str, bool]]:
    """(path, path relative to `folder`, is a symlink) of every `*.jsonl`, sorted like `os.walk`.

    Like `os.walk(folder)`: symlinked folders are listed but not entered. Uses `os.scandir` so a
    file's type comes from the directory entry, without a `stat` per file. Every folder listed
    is appended to `visited` when given.
    """
    top = os.fspath(folder)
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        dirpath, rel = stack.pop()
        if visited is not None:
            visited.append(dirpath)
        try:
            entries = list(os.scandir(dirpath))
        except OSError:
            continue
        prefix = rel + "/" if rel else ""
        files: list[tuple[str, str, bool]] = []
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            name = entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not entry.is_symlink():
                    subdirs.append((name, entry.path))
            elif name.endswith(".jsonl"):
                files.append((name, entry.path, entry.is_symlink()))
        files.sort()
        for name, path, link in files:
            yield path, prefix + name, link
        subdirs.sort(reverse=True)
        for name, path in subdirs:
            stack.append((path, prefix + name))


def _name_rel(path: str, rel: str, projects_dir: Path) -> SourceFile:
    """`_name_file` for a path found under `projects_dir`, from its relative parts."""
    parts = rel.split("/")
    name = parts[-1]
    stem = name[: -len(".jsonl")]
    agent = stem if stem.startswith("agent-") else ""
    if len(parts) == 1:
        return SourceFile(path, "", "" if agent else stem, agent)
    if len(parts) == 2:
        return SourceFile(path, parts[0], "" if agent else stem, agent)
    return SourceFile(path, parts[0], parts[1], agent or stem)


def find_files(
    paths: Iterable[str | os.PathLike[str]] | None = None, *, visited: list[str] | None = None
) -> list[SourceFile]:
    """Every transcript or ledger file under `paths` (default: the Claude folders), named.

    A path may be a Claude root (holding `projects/`), a `projects/` folder, any folder of
    transcripts (its sub-folders are then the projects), or a single `.jsonl` file. `visited`,
    when given, receives every path whose state decides the answer (the roots looked at and
    every folder listed), for the warm path's listing cache.
    """
    if paths is None:
        roots: list[Path] = [root / "projects" for root in default_roots()]
        if visited is not None:
            visited.extend(str(root) for root in roots)
        roots = [root for root in roots if root.is_dir()]
    else:
        roots = [Path(os.path.expanduser(os.fspath(p))) for p in paths]
        if visited is not None:
            visited.extend(str(root) for root in roots)
            visited.extend(str(root / "projects") for root in roots)
    seen: set[str] = set()
    found: list[SourceFile] = []
    for root in roots:
        if root.is_file():
            projects_dir = next((p for p in root.parents if p.name == "projects"), None)
            key = os.path.realpath(root)
            if key not in seen:
                seen.add(key)
                found.append(_name_file(root, projects_dir))
        elif root.is_dir():
            projects_dir = root / "projects" if (root / "projects").is_dir() else root
            # folders entered by the walk are no symlinks, so a plain file's real path is the
            # real path of `projects_dir` joined with its relative path
            real_top = os.path.realpath(projects_dir)
            for path, rel, link in _walk(projects_dir, visited):
                key = os.path.realpath(path) if link else os.path.join(real_top, rel)
                if key in seen:
                    continue
                seen.add(key)
                found.append(_name_rel(path, rel, projects_dir))
        else:
            raise CachescopeError(
                f"No such file or folder: {os.fspath(root)!r}. Pass a Claude folder, a "
                "projects/ folder or a .jsonl file (or nothing, for the default folders)."
            )
    return found
