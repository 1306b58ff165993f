"""What the notebook shows: a static per-call snapshot, charts and the live session dashboard.

Views compute no figures: they lay out what the ledger, the stability diff and lint return, and
escape every piece of text that reaches HTML (prompts and replies are untrusted).
"""

from __future__ import annotations

from cachescope.views._charts import MAX_POINTS, SessionSeries, chart_png, chart_spec, chart_svg
from cachescope.views._dashboard import SessionDashboard
from cachescope.views._html import esc
from cachescope.views._snapshot import CallView
from cachescope.views._tables import SessionsTable

__all__ = [
    "MAX_POINTS",
    "CallView",
    "SessionDashboard",
    "SessionSeries",
    "SessionsTable",
    "chart_png",
    "chart_spec",
    "chart_svg",
    "esc",
]
