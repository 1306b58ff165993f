"""`%%cached_prompt`: sending, what a call shows, and every option."""

from __future__ import annotations

from typing import Any

from conftest import STABLE, cell, html_of, last_call


def test_first_call_shows_reply_usage_cost_and_backend(run: Any, magics: Any) -> None:
    captured = run("--session aura", cell())
    final = last_call(captured)
    html = final.data["text/html"]
    for label in ("fresh", "write 5m", "write 1h", "read", "output", "hit share", "savings"):
        assert label in html
    assert "backend: sim" in final.data["text/plain"]
    assert "first call of this session" in final.data["text/plain"]


def test_output_metadata_carries_model_and_usage(run: Any, magics: Any) -> None:
    final = last_call(run("--session aura --model claude-haiku-4-5", cell()))
    meta = final.metadata["cachescope"]
    assert meta["model"] == "claude-haiku-4-5"
    assert meta["usage"]["ephemeral_5m_input_tokens"] > 0
    assert meta["usage"]["output_tokens"] > 0


def test_second_identical_call_reads_the_prefix_from_cache(run: Any, magics: Any) -> None:
    run("--session aura", cell())
    final = last_call(run("--session aura", cell(user="And now?")))
    assert final.metadata["cachescope"]["usage"]["cache_read_input_tokens"] > 4000
    assert "Prefix intact" in final.data["text/plain"]


def test_changed_stable_layer_shows_the_highlighted_break_and_tokens_lost(
    run: Any, magics: Any
) -> None:
    run("--session aura", cell())
    final = last_call(run("--session aura", cell(stable=STABLE + "Today is Monday.")))
    html = final.data["text/html"]
    assert "system_changed" in html
    assert "<mark" in html
    assert "tokens can no longer be read from cache" in html
    assert "server agrees" in html


def test_reply_is_stored_in_underscore(run: Any, magics: Any, ip: Any) -> None:
    run("--session aura", cell())
    reply = ip.user_ns["_"]
    assert reply.content[0].text
    assert reply.usage.output_tokens > 0


def test_out_stores_the_reply_in_the_named_variable(run: Any, magics: Any, ip: Any) -> None:
    run("--session aura --out reply", cell())
    assert ip.user_ns["reply"] is ip.user_ns["_"]


def test_body_is_templated_from_the_user_namespace_once(run: Any, magics: Any, ip: Any) -> None:
    class Counter:
        calls = 0

        def __str__(self) -> str:
            Counter.calls += 1
            return "Monday"

    ip.user_ns["weekday"] = Counter()
    run("--session aura", cell(dynamic="Today is {{ weekday }}."))
    assert Counter.calls == 1


def test_max_tokens_option_limits_the_reply(run: Any, magics: Any, ip: Any) -> None:
    run("--session aura --max-tokens 3", cell())
    assert ip.user_ns["_"].usage.output_tokens <= 3


def test_ttl_option_caches_unmarked_layers_for_an_hour(run: Any, magics: Any) -> None:
    usage = last_call(run("--session aura --ttl 1h", cell())).metadata["cachescope"]["usage"]
    assert usage["ephemeral_1h_input_tokens"] > 4000
    assert usage["ephemeral_5m_input_tokens"] < 100


def test_config_model_is_the_default_model(run: Any, magics: Any, ip: Any) -> None:
    ip.run_line_magic("config", 'CachedPrompt.model = "claude-haiku-4-5"')
    assert last_call(run("", cell())).metadata["cachescope"]["model"] == "claude-haiku-4-5"


def test_default_session_is_named_default(run: Any, magics: Any) -> None:
    run("", cell())
    assert magics.ledger.records[-1].session == "default"


def test_history_grows_by_one_exchange_per_call(run: Any, magics: Any) -> None:
    run("--session aura", cell())
    run("--session aura", cell(user="Second question"))
    assert len(magics.client().session("aura").history) == 4


def test_no_history_sends_without_and_keeps_the_history(run: Any, magics: Any) -> None:
    run("--session aura", cell())
    run("--session aura --no-history", cell(user="One-off question"))
    session = magics.client().session("aura")
    assert len(session.history) == 2
    assert len(magics.ledger) == 2


def test_stream_updates_the_snapshot_while_the_reply_arrives(
    run: Any, magics: Any, use_simulator: Any
) -> None:
    use_simulator(responder=lambda request: "word " * 400)
    magics_stream_refresh = __import__("cachescope.magics", fromlist=["x"])
    magics_stream_refresh.STREAM_REFRESH = 0.0
    try:
        captured = run("--session aura --stream", cell())
    finally:
        magics_stream_refresh.STREAM_REFRESH = 0.1
    updates = [o for o in captured.outputs if o.update]
    partial = [o for o in updates if o.metadata["cachescope"]["streaming"]]
    assert len(partial) >= 2
    assert "word word" in partial[-1].data["text/plain"]
    assert not updates[-1].metadata["cachescope"]["streaming"]


def test_no_stream_publishes_one_update_after_the_reply(run: Any, magics: Any) -> None:
    captured = run("--session aura --no-stream", cell())
    updates = [o for o in captured.outputs if o.update and "cachescope" in o.metadata]
    assert len(updates) == 1
    assert magics.ledger.records[-1].stream is False


def test_stream_config_false_sends_without_streaming(run: Any, magics: Any, ip: Any) -> None:
    ip.run_line_magic("config", "CachedPrompt.stream = False")
    run("--session aura", cell())
    assert magics.ledger.records[-1].stream is False


def test_quiet_shows_nothing_but_records_and_stores(run: Any, magics: Any, ip: Any) -> None:
    captured = run("--session aura --quiet", cell())
    assert captured.outputs == []
    assert len(magics.ledger) == 1
    assert ip.user_ns["_"].content


def test_dry_run_sends_nothing(run: Any, magics: Any) -> None:
    run("--session aura --dry-run", cell())
    assert len(magics.ledger) == 0
    assert magics.client().simulator.requests == 0


def test_dry_run_predicts_a_read_from_the_sessions_cache_state(run: Any, magics: Any) -> None:
    run("--session aura", cell())
    final = last_call(run("--session aura --dry-run", cell(user="Next?")))
    meta = final.metadata["cachescope"]
    assert meta["dry_run"] is True
    assert meta["usage"]["cache_read_input_tokens"] > 4000
    assert "dry run" in final.data["text/plain"]


def test_dry_run_lints_the_prompt(run: Any, magics: Any) -> None:
    final = last_call(
        run("--session aura --dry-run", cell(stable=STABLE + "\nCurrent time: 2026-11-21 14:03:07"))
    )
    assert "lint:" in final.data["text/plain"]
    assert "2026-11-21" in final.data["text/html"]


def test_dry_run_after_six_minutes_shows_the_expiry(run: Any, magics: Any, ip: Any) -> None:
    run("--session aura", cell())
    ip.run_line_magic("cache", "clock advance 6m")
    final = last_call(run("--session aura --dry-run", cell(user="Later?")))
    assert final.metadata["cachescope"]["usage"]["cache_read_input_tokens"] == 0
    assert "expired" in final.data["text/plain"]


def test_backend_option_sim_uses_the_simulator(run: Any, magics: Any) -> None:
    run("--session aura --backend sim", cell())
    assert magics.ledger.records[-1].backend == "sim"


def test_first_call_of_a_session_displays_its_dashboard(run: Any, magics: Any) -> None:
    captured = run("--session aura", cell())
    widgets = [o for o in captured.outputs if "application/vnd.jupyter.widget-view+json" in o.data]
    assert len(widgets) == 1
    assert magics.session_state("aura").dashboard is not None


def test_later_calls_update_the_same_dashboard_in_place(run: Any, magics: Any) -> None:
    run("--session aura", cell())
    dashboard = magics.session_state("aura").dashboard
    captured = run("--session aura", cell(stable=STABLE + "changed"))
    assert magics.session_state("aura").dashboard is dashboard
    assert not [o for o in captured.outputs if "application/vnd.jupyter.widget-view+json" in o.data]
    assert dashboard.table.value.count("<tr>") == 3  # header + 2 calls
    assert "system_changed" in dashboard.prefix_break.value


def test_dashboard_off_shows_no_widget(run: Any, magics: Any, ip: Any) -> None:
    ip.run_line_magic("config", "CachedPrompt.dashboard = False")
    captured = run("--session aura", cell())
    assert len(html_of(captured)) >= 1
    assert not [o for o in captured.outputs if "application/vnd.jupyter.widget-view+json" in o.data]


def test_lint_findings_point_at_the_line_of_the_cell(run: Any, magics: Any) -> None:
    # line 1 "@stable", 2 the stable text, 3 a blank line, 4 the buster; the stable layer's text
    # starts on cell line 2, so its line 3 is cell line 4.
    body = "@stable\n" + STABLE + "\n\nLast deploy: 2026-12-04T10:00:00Z\n@user\nHi"
    final = last_call(run("--session aura --dry-run", body))
    text = final.data["text/plain"]
    assert "cell line 4:14" in text, text
    assert "cell line 4:14" in final.data["text/html"]


def test_findings_of_a_layer_whose_template_added_lines_keep_the_layer_line(
    run: Any, magics: Any, ip: Any
) -> None:
    ip.user_ns["notes"] = "one\ntwo"
    body = "@stable\n{{ notes }}\n" + STABLE + "\nLast deploy: 2026-12-04T10:00:00Z\n@user\nHi"
    text = last_call(run("--session aura --dry-run", body)).data["text/plain"]
    assert "cell line" not in text
    assert " line 4:14" in text, text
