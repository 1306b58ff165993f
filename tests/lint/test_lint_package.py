"""`cachescope.lint` as a package: callable whichever way it was imported, a build callable, and
rules as data (one object per rule; the anchor search derived from the rule objects)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from heldout.busters import TEMPLATES

import cachescope as cs
from cachescope.lint import RULES, Findings, TextRule, lint
from cachescope.lint._kinds import low
from cachescope.lint._scan import Scanner
from cachescope.lint.rules import TEXT_RULES

MODEL = "claude-sonnet-5"
CORPORA = [
    Path(__file__).parents[1] / "stability" / "corpus",
    Path(__file__).parent / "heldout" / "clean",
]
PARAMS = (
    '{"model": "claude-sonnet-5", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}],'
    ' "system": [{"type": "text", "text": "Session 3f2b8c1e-9d4a-4e57-b6a2-0c9e7f1d5a88"}]}'
)


@pytest.mark.parametrize(
    "first",
    [
        "import cachescope as cs; from cachescope import lint as f",
        "import cachescope.lint; import cachescope as cs",
        "from cachescope.lint import lint, Finding; import cachescope as cs",
        "from cachescope import Finding; import cachescope.lint.rules; import cachescope as cs",
    ],
)
def test_cs_lint_is_callable_whatever_was_imported_first(first: str) -> None:
    code = (
        f"{first}\nimport json\n"
        f"params = json.loads({PARAMS!r})\n"
        "assert cs.lint(params).rules() == ['uuid'], cs.lint(params)\n"
        "from cachescope import lint, Finding\n"
        "from cachescope.lint import lint as function, Finding as F\n"
        "assert lint(params) == function(params) and Finding is F is cs.Finding\n"
        "assert cs.lint('Today is 2026-11-21', model='claude-sonnet-5').rules() == ['date']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_build_callable_is_built_and_linted() -> None:
    def build() -> cs.Prompt:
        return cs.Prompt(MODEL, [cs.Layer("stable", "Now: 2026-11-21T10:00:00Z. " + "x " * 2000)])

    assert isinstance(lint(build), Findings)
    assert lint(build).rules() == ["timestamp"]


def test_every_rule_is_one_object_with_id_severity_and_fix() -> None:
    names = [rule.name for rule in TEXT_RULES]
    assert len(names) == len(set(names))
    for rule in RULES:
        assert rule.id and rule.severity in ("error", "warning") and rule.fix.endswith(".")
    assert {rule.id for rule in RULES} >= {"timestamp", "uuid", "below_minimum", "prefix_changed"}


def test_a_new_text_rule_is_searched_through_its_own_anchors() -> None:
    rule = TextRule(
        "ticket", "warning", r"\bTCK-\d{5}\b", "A ticket number changes.", anchors=low("tck-0")
    )
    scanner = Scanner([*TEXT_RULES, rule])
    out: list[cs.Finding] = []
    scanner.scan("Handle TCK-48213 first.", None, "system", out)
    assert [(f.rule, f.text, f.column) for f in out] == [("ticket", "TCK-48213", 8)]


def _whole_text_matches(rule: TextRule, text: str) -> list[tuple[int, int]]:
    spans = []
    for match in rule.regex.finditer(text):
        if match.start() < match.end() and (rule.confirm is None or rule.confirm(match)):
            has_value = "value" in rule.regex.groupindex and match.group("value") is not None
            spans.append(match.span("value") if has_value else match.span())
    return spans


def _with_busters(text: str, rng: random.Random) -> str:
    """The text with a held-out buster line after every fifth line."""
    lines = text.split("\n")
    for at in range(len(lines) - len(lines) % 5, 0, -5):
        lines.insert(at, rng.choice(TEMPLATES)(rng))
    return "\n".join(lines)


# Known gaps of the hand-written anchors: abbreviated weekdays before a month ("Tue Dec 1") and
# random identifiers whose letters and digits never alternate one by one ("e07cb3136fa8").
_LOSSY = {"weekday", "random_id"}


def test_anchors_and_gates_lose_no_match_of_their_rule_on_the_corpora() -> None:
    """Every match of a rule's regex over the whole text overlaps a finding of the windowed
    search (which may start it at a later label, never miss it)."""
    rng = random.Random(5)
    texts = [path.read_text("utf-8") for corpus in CORPORA for path in sorted(corpus.iterdir())]
    texts += [_with_busters(text, rng) for text in texts]
    lost = []
    for rule in TEXT_RULES:
        if rule.name in _LOSSY:
            continue
        scanner = Scanner([rule])
        for text in texts:
            out: list[cs.Finding] = []
            scanner.scan(text, None, "system", out)
            for start, end in _whole_text_matches(rule, text):
                line_start = text.rfind("\n", 0, start) + 1
                line = text.count("\n", 0, start) + 1
                column, end_column = start - line_start + 1, end - line_start + 1
                if not any(
                    f.line == line and f.column < end_column and f.end_column > column for f in out
                ):
                    lost.append((rule.name, text[start:end]))
    assert lost == [], sorted(set(lost))


def test_positions_read_off_a_shorter_anchor_are_those_a_search_finds() -> None:
    from cachescope.lint import _SCANNER
    from cachescope.lint._kinds import SHAPES
    from cachescope.lint._scan import _positions

    text = "Today is Monday; this chat (chat_8f2K) has a thread id. " * 50
    text += " ".join(path.read_text("utf-8") for path in sorted(CORPORA[0].iterdir()))
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    shapes = {name: ascii_text.translate(table) for name, table in SHAPES.items()}
    found = _SCANNER._anchor_positions(shapes)
    assert len(found["low", "monday"]) >= 50  # read off "day"
    for (shape, literal), positions in found.items():
        assert positions == _positions(shapes[shape], literal), literal
