"""What `load` read and what it left out (light: importable without numpy or pandas)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CAVEAT = (
    "Logs can undercount what was billed: Claude Code does not log every call (some thinking and "
    "background requests are missing), so treat these figures as a lower bound."
)


@dataclass(frozen=True)
class SkippedLine:
    """A line that could not be counted: where it is and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class LoadReport:
    """What `load` read and what it left out (in `df.attrs["load_report"]`)."""

    files: int = 0
    bytes: int = 0
    lines: int = 0
    usage_lines: int = 0
    responses: int = 0
    duplicates_dropped: int = 0
    replays_dropped: int = 0
    synthetic_skipped: int = 0
    outside_dates: int = 0
    malformed: tuple[SkippedLine, ...] = ()
    files_read: int = 0
    files_from_cache: int = 0
    seconds: float = 0.0
    unknown_models: tuple[str, ...] = ()
    compactions: tuple[tuple[str, int], ...] = field(default=(), repr=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> LoadReport:
        return self  # immutable; pandas deep-copies `attrs` on every operation

    def summary(self) -> str:
        text = (
            f"{self.files:,} files ({self.files_read:,} read, {self.files_from_cache:,} from cache), "
            f"{self.lines:,} lines, {self.usage_lines:,} usage lines -> {self.responses:,} responses "
            f"({self.duplicates_dropped:,} duplicate lines and {self.replays_dropped:,} sidechain replays "
            f"dropped, {self.synthetic_skipped:,} <synthetic> errors skipped); "
            f"{len(self.malformed):,} malformed lines skipped"
        )
        if self.outside_dates:
            text += f"; {self.outside_dates:,} responses outside --since/--until"
        return text + f"; {self.seconds:.2f} s."

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "lines": self.lines,
            "usageLines": self.usage_lines,
            "responses": self.responses,
            "duplicatesDropped": self.duplicates_dropped,
            "replaysDropped": self.replays_dropped,
            "syntheticSkipped": self.synthetic_skipped,
            "outsideDates": self.outside_dates,
            "malformed": [
                {"path": s.path, "line": s.line, "reason": s.reason} for s in self.malformed
            ],
            "filesRead": self.files_read,
            "filesFromCache": self.files_from_cache,
            "seconds": round(self.seconds, 3),
            "unknownModels": list(self.unknown_models),
        }
