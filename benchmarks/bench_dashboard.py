"""Dashboard update at 10,000 calls: `SessionDashboard.add` vs re-charting the raw DataFrame.

A session with 10,000 recorded calls gets one more call. Measured:

* cachescope — `SessionDashboard.add(record, diff)`: running totals are extended (O(1)), the
  usage table and totals are re-rendered, and the chart gets at most `MAX_POINTS` bucketed points,
  all under `hold_sync`.
* peer — what one would otherwise write: `ledger.to_pandas()` of the session, an altair chart of the
  raw per-call rows (cumulative sums in a Vega-Lite window transform, one point per call) assigned
  to the same `JupyterChart`.

Both run in this process with no front-end attached (the widget messages go nowhere), so the
figures are the Python-side cost of an update. Best of several repetitions.

Run: `.venv/bin/python -m benchmarks.bench_dashboard`
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

from cachescope.ledger import CallRecord, Ledger, format_time

CALLS = 10_000
BUDGET_MS = 50.0


def _records(count: int) -> list[CallRecord]:
    records = []
    for i in range(count):
        hit = i % 7 != 0
        records.append(
            CallRecord(
                time=format_time(1_800_000_000.0 + 30 * i),
                model="claude-sonnet-5",
                session="aura",
                input_tokens=40,
                cache_creation_input_tokens=0 if hit else 6_000,
                ephemeral_5m_input_tokens=0 if hit else 6_000,
                cache_read_input_tokens=6_000 if hit else 0,
                output_tokens=200,
                cost=0.0051 if hit else 0.0255,
                cost_without_cache=0.0213,
                savings=0.0162 if hit else -0.0042,
            )
        )
    return records


def _best(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def main() -> None:
    import altair as alt

    from cachescope.views import SessionDashboard

    records = _records(CALLS + 1)
    ledger = Ledger()
    for record in records:
        ledger.append(record)
    dashboard = SessionDashboard("aura", records[:CALLS], static_chart=False)
    extra = records[CALLS]

    ours = _best(lambda: dashboard.add(extra), repeat=30)

    peer_chart = alt.JupyterChart(alt.Chart().mark_point())

    def peer() -> None:
        frame = ledger.to_pandas()
        frame = frame[frame["session"] == "aura"].reset_index(drop=True)
        frame["call"] = frame.index + 1
        frame = frame[["call", "cost", "cost_without_cache", "cache_read_input_tokens"]]
        chart = (
            alt.Chart(frame)
            .transform_window(with_caching="sum(cost)", without_caching="sum(cost_without_cache)")
            .transform_fold(["with_caching", "without_caching"], as_=["kind", "usd"])
            .mark_line()
            .encode(x="call:Q", y="usd:Q", color="kind:N")
        )
        peer_chart.chart = chart

    with alt.data_transformers.disable_max_rows():
        theirs = _best(peer, repeat=5)

    print(
        f"Dashboard update at {CALLS:,} calls ({platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()})"
    )
    print(f"  cachescope SessionDashboard.add : {ours:8.2f} ms  (budget {BUDGET_MS:.0f} ms)")
    print(f"  peer: re-chart raw DataFrame    : {theirs:8.2f} ms")
    print(f"  ratio peer / cachescope         : {theirs / ours:8.1f}x")
    print(f"  within budget                   : {'yes' if ours <= BUDGET_MS else 'NO'}")


if __name__ == "__main__":
    main()
