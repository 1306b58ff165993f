"""lint() quality on a held-out labelled corpus nobody tuned the rules on (issue 5).

`tests/stability/test_lint_quality.py` measures the issue's targets (recall >= 95%, at most 1
false alarm per 100 KB of clean text) on the shipped corpus, whose injection templates were written
beside the rules. This is a second, independent corpus:

- clean text in `heldout/clean/` (prose system prompts, C, Python and Go code, JSON tool schemas,
  Markdown), written for this test and full of things that must not alarm: versions such as 3.11.7
  and semver ranges, HTTP status codes, ports, prices, ISBNs, hex constants, unit conversions,
  phone and address examples, opening hours, years in prose, physical constants;
- buster copies of it, injected from the templates in `heldout/busters.py` (45 templates written
  apart from the rules: ids, build numbers, SHAs, banners, locale and RFC 2822 dates, clock times,
  relative times, countdowns, seeds, nonces, JWTs, counters, live-data snippets, A/B buckets),
  each injection labelled with its line and column span; found when a finding overlaps it.

Measured with the rules of commit 997fd42, before any rule was changed for this corpus:
recall 38.5% (231 of 600 injections found), 10 false alarms in 94.3 KB of clean text (10.6 per
100 KB): nine 64-bit hex constants in C (`0x9E3779B97F4A7C15ull`) as random IDs and 1610612736
(1.5 GiB in bytes) as an epoch. At that commit the test held only those figures, as a floor.

After the rules were widened (user/ticket/order numbers, build numbers and commits, dates without
a year, weekday + part of day, counts "today"/"right now", queue positions, countdowns, weather and
price snippets, A/B buckets, labelled session tokens; hex literals and pre-2023 epochs no longer
alarm): recall 100% (600 of 600), 0 false alarms; the shipped corpus keeps 0 false alarms in
201 KB. This corpus is therefore no longer held out: the rules were fitted with its misses in
view. `THIRD_SET` below was written after that and scored 45% (9 of 20) on those rules (442ae40);
its misses were then closed by general patterns (19 of 20), so it is not held out either.
`FOURTH_SET` was written after that round and measured once, untuned: 7 of 20 (35%; the rules of
997fd42: 3 of 20). That is the honest figure for phrasings the rules have never seen — far below
the 95% the template corpus shows. The test holds the issue's targets on the template corpus and
the measured figures of the two probe sets as floors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from heldout.busters import TEMPLATES, rules_on_line

from cachescope import lint

CLEAN = Path(__file__).parent / "heldout" / "clean"
MODEL = "claude-sonnet-5"
SEED = 20261204
PER_FILE = 60


@dataclass(frozen=True)
class Injection:
    file: str
    line: int  # 1-based line of the injected text in the copy
    start: int  # 1-based columns of the buster
    end: int
    text: str


def clean_files() -> dict[str, str]:
    return {path.name: path.read_text("utf-8") for path in sorted(CLEAN.iterdir())}


def inject(name: str, text: str, rng: random.Random, count: int) -> tuple[str, list[Injection]]:
    """A copy of `text` with `count` buster lines inserted, and where each one sits."""
    lines = text.split("\n")
    spots = sorted(rng.sample(range(1, len(lines)), min(count, len(lines) - 1)))
    out: list[str] = []
    injections: list[Injection] = []
    previous = 0
    for spot in spots:
        out.extend(lines[previous:spot])
        previous = spot
        buster = rng.choice(TEMPLATES)(rng)
        prefix = rng.choice(["", "Note: ", "  ", "* ", "# ", "// ", '"description": "'])
        out.append(prefix + buster)
        column = len(prefix) + 1
        injections.append(Injection(name, len(out), column, column + len(buster), buster))
    out.extend(lines[previous:])
    return "\n".join(out), injections


def measure() -> tuple[float, list[Injection], int, list[tuple[str, str, str]], float]:
    """(recall, missed, injections, false alarms, clean KB) on the held-out corpus."""
    rng = random.Random(SEED)
    files = clean_files()
    total = 0
    missed: list[Injection] = []
    for name, text in files.items():
        copy, planned = inject(name, text, rng, PER_FILE)
        spans = {(f.line, f.column, f.end_column) for f in lint(copy, model=MODEL)}
        total += len(planned)
        missed.extend(
            i
            for i in planned
            if not any(ln == i.line and s < i.end and e > i.start for ln, s, e in spans)
        )
    alarms = [
        (name, f.rule, f.text) for name, text in files.items() for f in lint(text, model=MODEL)
    ]
    size_kb = sum(len(text.encode("utf-8")) for text in files.values()) / 1024
    return 1 - len(missed) / total, missed, total, alarms, size_kb


def test_held_out_corpus_is_large_and_varied() -> None:
    files = clean_files()
    assert sum(len(t.encode("utf-8")) for t in files.values()) >= 90 * 1024
    kinds = {name.split("_")[0] for name in files}
    assert {"prose", "code", "tools", "markdown"} <= kinds
    assert len(TEMPLATES) >= 40


def test_held_out_recall_and_false_alarms() -> None:
    recall, missed, total, alarms, size_kb = measure()
    report = (f"recall {recall:.1%} of {total}", [m.text for m in missed], alarms, size_kb)
    assert total >= 450
    # the targets (997fd42 scored 38.5% and 10 alarms here; see the docstring)
    assert recall >= 0.95, report
    assert len(alarms) <= size_kb / 100, report


# Written after the rules were fitted to the corpus above, and measured once without tuning.
THIRD_SET = [
    "Customer #: 5512093",
    "Agent shift: night (started 22:10)",
    "Snapshot of 3 Dec 2026",
    "Updated: yesterday at 17:45",
    "Membership no. 88-2231-7",
    "Your loyalty points: 1,482",
    "Build: web-2026.49.3",
    "Commit 9c1f0ae deployed",
    "Rates fetched 5 mins ago",
    "EUR/USD 1.0842",
    "Temperature outside: 12 °C",
    "Current moon phase: waxing gibbous (61%)",
    "Shift ends in 3 hrs",
    "Seed=4471",
    "idempotency-key: 7f9c2ba4e88f827d",
    "Requests in the last minute: 57",
    "Player ID 77120934",
    "Generated Thu 12/03 at 4:15 PM",
    "Your position in line: 14",
    "Local date: 3/12",
]


def flagged(lines: list[str]) -> list[str]:
    """The lines that get a finding when each stands alone inside a short system prompt."""
    prompt = "You are a helpful assistant for the support team.\n{}\nAnswer concisely.\n"
    return [
        line for line in lines if any(f.line == 2 for f in lint(prompt.format(line), model=MODEL))
    ]


def test_third_set_written_after_the_rules() -> None:
    found = flagged(THIRD_SET)
    # 9 of 20 when first measured, 19 after its misses were closed (see the docstring)
    assert len(found) >= 19, sorted(set(THIRD_SET) - set(found))


# Written after the rules were fitted to THIRD_SET too; measured once, never tuned on.
FOURTH_SET = [
    "Logged in as jdoe (uid 50231)",
    "Kernel build #1187 SMP",
    "Price of BTC right now: $97,310",
    "Next maintenance window starts in 2 days",
    "Reminder sent at 08:30 today",
    "Your cart contains 4 items",
    "Hello Maria! Last login: Tue Dec 1 22:04:11",
    "Document version 17, saved 12/1/26",
    "Booking ref: XK7P2Q",
    "Cookie: _ga=GA1.2.1983746512.1764831234",
    "Rendered for tenant t-8813 on node web-7",
    "cache-buster: v=1764832011",
    "Prompt assembled in 183 ms",
    "It is the 338th day of the year.",
    "Good evening, it's a cloudy Friday in Leeds.",
    "Open incidents: 3 (as of this morning)",
    "Days since last incident: 12",
    "req 7f3a-11ef-9c2b",
    "Current load: 73% on 12 workers",
    "Active users online: 1,204",
]


def test_fourth_set_never_tuned_on() -> None:
    found = flagged(FOURTH_SET)
    # 7 of 20 when measured (see the docstring); 13 after probe round 5 (test_lint_probes.py),
    # which took eight of its misses into its own probes: a floor against regressions
    assert len(found) >= 13, sorted(set(FOURTH_SET) - set(found))


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("You are speaking with user #31337.", "entity_id"),
        ("Order number: SO-5550123", "entity_id"),
        ("Build 5120 (commit 9ad31f0)", "build_id"),
        ("Weather in Quito: 14°C, humidity 81%", "live_data"),
        ("variant=checkout_b_xqkvrm", "ab_bucket"),
        ("session=xYzAbCdEfGh1JkLm", "token_label"),
        ("Your reward points: 2,040", "current_value"),
        ("Offer ends in 4h 20m.", "relative_time"),
        ("Prepared Mar 9th for this account.", "date"),
        ("It's Friday evening for the user.", "weekday"),
        ("Report generated 9:41pm", "time"),
    ],
)
def test_new_rules_name_the_right_rule(line: str, rule: str) -> None:
    rules = rules_on_line(line, MODEL)
    assert rule in rules, rules


@pytest.mark.parametrize(
    "clean",
    [
        "#define MIX 0x9E3779B97F4A7C15ull\n",
        "uint64_t x = *state ? *state : 0x2545F4914F6CDD1Dull;\n",
        "'1.5 GiB' -> 1610612736 bytes",
        "Give times on the 24-hour clock (9:10, 15:20).",
        "Travel clinics run on Saturday mornings from 9:00 to 12:00.",
        "Since 1998 the bank has had 14 branches; call 1-800-555-0142.",
        "Python 3.11.7, port 8443, HTTP 429, ISBN 978-1-449-37332-0.",
        "Customers get 1.5% back; a 2.0 kg parcel costs 6.95 + 3 x 1.10 = 10.25.",
    ],
)
def test_hard_negatives_of_the_held_out_corpus_are_not_flagged(clean: str) -> None:
    assert list(lint(clean, model=MODEL)) == []
