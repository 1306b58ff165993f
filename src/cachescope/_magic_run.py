"""What one `%%cached_prompt` call does, in Python terms: the magic's link to the client.

The magic parses options and shows things; this module sends a parsed cell through a `Session`
(streaming or not), keeps the rendered params of a session's recent calls so the next call (and
`%cache diff`) can be compared with full text, and predicts usage for `--dry-run`. Every figure comes
from the client, the simulator, the stability diff, lint and pricing.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.client import CachingClient, Session
    from cachescope.ledger import CallRecord
    from cachescope.stability import PrefixDiff
    from cachescope.views import SessionDashboard

__all__ = ["SessionState", "parse_duration", "predict_record", "send_cell"]

#: Rendered params kept per session for text-level diffs (older calls fall back to fingerprints).
KEEP_PARAMS = 50

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class SessionState:
    """A session as the magic knows it: its client session, recent params and dashboard."""

    name: str
    client: CachingClient | None = None
    session: Session | None = None
    dashboard: SessionDashboard | None = None
    dashboard_id: str | None = None
    dashboard_stale: bool = False
    params: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)
    previous: tuple[CallRecord, dict[str, Any]] | None = None

    def remember(self, record: CallRecord, params: dict[str, Any]) -> None:
        self.params[id(record)] = params
        while len(self.params) > KEEP_PARAMS:
            self.params.popitem(last=False)
        if record.ok:
            self.previous = (record, params)

    def records(self) -> list[CallRecord]:
        """This session's calls in the ledger, oldest first (earlier kernels' included)."""
        if self.client is None:
            return []
        return [r for r in self.client.ledger.records if r.session == self.name]

    def diff(self, record: CallRecord, params: Mapping[str, Any]) -> PrefixDiff | None:
        """The stability diff of this call against the session's previous successful call."""
        if self.previous is None:
            return None
        from cachescope.stability import compare

        before, before_params = self.previous
        return compare(
            before_params,
            params,
            gap_seconds=record.timestamp - before.timestamp,
            server_reason=record.cache_miss_reason,
        )

    def diff_calls(self, first: CallRecord, second: CallRecord) -> PrefixDiff:
        """Diff of two recorded calls: with text when both params are at hand, else fingerprints."""
        from cachescope.stability import compare

        a, b = self.params.get(id(first)), self.params.get(id(second))
        if a is not None and b is not None:
            return compare(
                a,
                b,
                gap_seconds=second.timestamp - first.timestamp,
                server_reason=second.cache_miss_reason,
            )
        return compare(first, second)


def send_cell(
    session: Session,
    params: dict[str, Any],
    *,
    stream: bool,
    on_text: Callable[[str], None] | None = None,
    keep_history: bool = True,
) -> CallRecord:
    """Send a cell's rendered `params` as the session's next call and return its record."""
    return session.create(params, stream=stream, on_text=on_text, keep_history=keep_history)


def predict_record(
    client: CachingClient, params: Mapping[str, Any], *, session: str
) -> CallRecord | None:
    """A record of the usage `params` would get now, from the simulator's cache state.

    None when the client talks to the real API (there is no cache state to predict from).
    """
    if client.simulator is None:
        return None
    from cachescope import pricing
    from cachescope.ledger import CallRecord, format_time

    usage = client.simulator.predict(dict(params))
    counts = pricing.usage_counts(usage)
    model = str(params.get("model", ""))
    return CallRecord(
        time=format_time(float(client.clock.now())),
        model=model,
        backend=client.backend,
        session=session,
        input_tokens=counts.input_tokens,
        cache_creation_input_tokens=counts.cache_write_tokens,
        ephemeral_5m_input_tokens=counts.cache_write_5m_tokens,
        ephemeral_1h_input_tokens=counts.cache_write_1h_tokens,
        cache_read_input_tokens=counts.cache_read_tokens,
        output_tokens=0,
        cost=pricing.cost(counts, model),
        cost_without_cache=pricing.cost_without_cache(counts, model),
        savings=pricing.savings(counts, model),
        extra={"dry_run": True},
    )


def parse_duration(words: list[str]) -> float:
    """Seconds of a duration written as e.g. `6m`, `90s`, `1h 30m`; ValueError when unreadable."""
    text = "".join(words).strip()
    if not text:
        raise ValueError("no duration given")
    position, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"cannot read the duration {' '.join(words)!r}")
    return total


def export_ledger(ledger: Any, path: str) -> int:
    """Write every record of `ledger` to `path`: CSV for `.csv`, JSON lines for `.jsonl`/`.json`.

    Returns the number of records written; ValueError for another extension.
    """
    lowered = path.lower()
    records = ledger.records
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        with open(path, "wb") as out:
            for record in records:
                out.write(record.to_json() + b"\n")
        return len(records)
    if lowered.endswith(".csv"):
        import orjson

        frame = ledger.to_pandas()
        for column in ("blocks", "extra"):
            if column in frame.columns:
                frame[column] = [orjson.dumps(v).decode() for v in frame[column]]
        frame.to_csv(path, index=False)
        return len(records)
    raise ValueError(f"cannot tell the format of {path!r}: end the name in .csv or .jsonl.")
