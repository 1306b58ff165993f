"""Prompts and replies are untrusted: nothing of theirs reaches HTML unescaped."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import STABLE, html_of
from IPython.utils.capture import capture_output

PAYLOADS = (
    "<img src=x onerror=alert(1)>",
    "<script>window.__xss = 1</script>",
    "</textarea><b>bold</b>",
    '" onmouseover="alert(1)',
    "' onfocus='alert(1)",
)
RAW = ("<img", "<script", "</textarea", "<b>bold", '" onmouseover', "' onfocus")
EVIL = " ".join(PAYLOADS)


def body(extra: str = "") -> str:
    return "\n".join(
        [
            "@stable",
            STABLE + EVIL + extra,
            "@system rules",
            "Rules: " + EVIL,
            "@conversation",
            "Memories: " + EVIL,
            "@dynamic",
            "Now: " + EVIL,
            "@user",
            "Question: " + EVIL,
        ]
    )


def all_html(captured: Any, magics: Any) -> list[str]:
    pieces = html_of(captured)
    for state in magics._sessions.values():
        if state.dashboard is not None:
            dash = state.dashboard
            pieces += [dash.header.value, dash.table.value, dash.prefix_break.value]
    return pieces


def assert_escaped(pieces: list[str]) -> None:
    assert pieces
    for piece in pieces:
        for raw in RAW:
            assert raw not in piece, f"unescaped {raw!r} in {piece[:200]!r}"


@pytest.fixture
def evil_replies(use_simulator: Any) -> Any:
    return use_simulator(responder=lambda request: "Reply: " + EVIL)


def test_payloads_in_every_layer_user_turn_and_reply_are_escaped(
    ip: Any, magics: Any, evil_replies: Any
) -> None:
    with capture_output() as captured:
        ip.run_cell_magic("cached_prompt", "--session aura", body())
        ip.run_cell_magic("cached_prompt", "--session aura", body(extra=" " + EVIL))
    assert_escaped(all_html(captured, magics))


def test_escaped_payloads_are_shown_as_text(ip: Any, magics: Any, evil_replies: Any) -> None:
    with capture_output() as captured:
        ip.run_cell_magic("cached_prompt", "--session aura", body())
    final = html_of(captured)[-1]
    assert "Reply: &lt;img src=x onerror=alert(1)&gt;" in final


def test_payload_in_the_changed_span_of_a_diff_is_escaped(
    ip: Any, magics: Any, evil_replies: Any
) -> None:
    with capture_output() as captured:
        ip.run_cell_magic("cached_prompt", "--session aura", body())
        ip.run_cell_magic("cached_prompt", "--session aura", body(extra="<script>x</script>"))
    final = html_of(captured)[-1]
    assert "&lt;script&gt;x&lt;/script&gt;" in final
    assert_escaped([final])


def test_payload_in_lint_findings_is_escaped(ip: Any, magics: Any, evil_replies: Any) -> None:
    with capture_output() as captured:
        ip.run_cell_magic(
            "cached_prompt",
            "--session aura --dry-run",
            body(extra="\nCurrent time: 2026-11-21 14:03:07 <script>x</script>"),
        )
    final = html_of(captured)[-1]
    assert "cachescope-findings" in final
    assert_escaped([final])


def test_payload_in_the_session_name_is_escaped(ip: Any, magics: Any, evil_replies: Any) -> None:
    with capture_output() as captured:
        ip.run_cell_magic("cached_prompt", "--session '<img src=x onerror=alert(1)>'", body())
        ip.run_line_magic("cache", "sessions")
    assert_escaped(all_html(captured, magics))
