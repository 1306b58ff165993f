"""Mistakes show as one-line usage errors with the cell line; API errors as formatted messages."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import cell
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from cachescope.magics import CallFailedError
from cachescope.sim import Fault


def test_syntax_error_names_the_cell_line(run: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match=r"cell line 2: content before the first header"):
        run("", "stray text\n@user\nhi")


def test_undefined_variable_names_the_cell_line(run: Any, magics: Any) -> None:
    body = "@stable\nYou are Aura.\n@dynamic\nNow: {{ not_defined_anywhere }}\n@user\nhi"
    with pytest.raises(UsageError, match=r"cell line 5: undefined variable"):
        run("", body)


def test_unknown_option_is_a_usage_error(run: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="unrecognized arguments: --modle"):
        run("--modle claude-haiku-4-5", cell())


def test_repeated_option_is_a_usage_error(run: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="--model is given twice"):
        run("--model claude-haiku-4-5 --model claude-sonnet-5", cell())


def test_stream_and_no_stream_together_are_a_usage_error(run: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="--stream and --no-stream contradict"):
        run("--stream --no-stream", cell())


def test_bad_ttl_choice_is_a_usage_error(run: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="invalid choice: '10m'"):
        run("--ttl 10m", cell())


def test_out_must_be_a_variable_name(run: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="not a valid Python variable name"):
        run("--out 1abc", cell())


def test_negative_max_tokens_is_a_usage_error(run: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="is negative"):
        run("--max-tokens -5", cell())


def test_usage_error_prints_no_traceback(ip: Any, magics: Any) -> None:
    with capture_output() as captured:
        result = ip.run_cell("%%cached_prompt --bogus\n@user\nhi")
    assert isinstance(result.error_in_exec, UsageError)
    assert "UsageError" in captured.stderr
    assert "Traceback" not in captured.stderr + captured.stdout


def test_api_error_is_a_formatted_message_with_its_type(
    run: Any, magics: Any, use_simulator: Any
) -> None:
    use_simulator(faults=[Fault("server_error", calls=(1, 2, 3, 4, 5))])
    with pytest.raises(CallFailedError, match=r"InternalServerError \(HTTP 500\)"):
        run("--no-stream", cell())


def test_api_error_shows_no_traceback(ip: Any, magics: Any, use_simulator: Any) -> None:
    use_simulator(faults=[Fault("rate_limit", calls=(1, 2, 3, 4, 5))])
    with capture_output() as captured:
        result = ip.run_cell("%%cached_prompt --no-stream\n" + cell())
    assert isinstance(result.error_in_exec, CallFailedError)
    text = captured.stderr + captured.stdout
    assert "RateLimitError (HTTP 429)" in text
    assert "Traceback" not in text


def test_api_error_keeps_what_was_recorded_and_records_the_failure(
    run: Any, magics: Any, use_simulator: Any
) -> None:
    use_simulator(faults=[Fault("overloaded", calls=(2, 3, 4, 5, 6))])
    run("--no-stream", cell())
    with pytest.raises(CallFailedError):
        run("--no-stream", cell(user="again"))
    records = magics.ledger.records
    assert [r.ok for r in records] == [True, False]
    assert records[1].error_status == 529


def test_api_error_updates_the_snapshot_with_the_error(
    ip: Any, magics: Any, use_simulator: Any
) -> None:
    use_simulator(faults=[Fault("server_error", calls=(1, 2, 3, 4, 5))])
    with capture_output() as captured:
        ip.run_cell("%%cached_prompt --no-stream\n" + cell())
    final = [o for o in captured.outputs if "cachescope" in (o.metadata or {})][-1]
    assert "cachescope-error" in final.data["text/html"]
    assert final.metadata["cachescope"]["ok"] is False


def test_anthropic_backend_without_a_key_is_a_usage_error(
    run: Any, magics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(UsageError, match="anthropic"):
        run("--backend anthropic", cell())
