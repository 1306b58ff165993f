"""lint() on probe phrasings written apart from the rules (issue 5, probe round 5).

`PROBES` was written in one go before any rule was changed for it: the eight misses of
`FOURTH_SET` (`test_lint_heldout_corpus.py`) plus new busters a system prompt might carry, in
phrasings the earlier corpora do not use — log lines, ordinal days, short US/EU dates, durations,
relative times, membership/account/ticket numbers, uids/pids, "days since" counters, version and
build stamps, live prices and weather, session and trace tokens. Each is a line of a prompt and
the part of it that changes between calls; the probe counts as found when a finding on that line
overlaps that part (any rule id will do; the family is what a reader would call it).

Measured once on the rules of 5d9ee5d, before any rule was changed for it: 5 of 52 (9.6%) —
two H:MM:SS clocks in log lines, "this hour: 412", a labelled request id and a random-looking pod
name. (Of the eight carried-over FOURTH_SET misses, the login line is found by its clock.)

The rules were then widened with general patterns, not these strings: a duration after "took" or
"<verb>ed in" ("assembled in 183 ms"), the Nth day of the year or "day N of" said of now, numeric
dates with a two-digit year and "4-Dec-26", relative times in words ("as of this morning",
"earlier today", "a few minutes ago"), "<things> since <event>: N", "N <things> today", uids,
pids and `name[pid]` tags, account/member numbers in digit groups (labelled, and not phone
numbers), build stamps after "+build." / "nightly." / "pipeline #", price moves "(+0.4%)",
temperatures said of now, spot prices, labelled short tokens that look random, dashed hex groups.
After that: 52 of 52, with no new false alarm on either clean corpus (0 in 296 KB) nor on 2.4 MB
of standard-library source beyond the 43 alarms it already had. This set is therefore no longer
held out; `HELD_OUT_AFTER` below is.

`HELD_OUT_AFTER` (24 lines) was written after those rules were committed (5b1989c), in one go,
and measured once without changing any rule: 7 of 24 (29%). Found: a written date with a clock,
"Conversation #88213", "2 hrs ago", "9 days since your last order", a labelled "right now" value,
and two lines found by luck under another rule ("UID: 7731-AX-19" as a process id, a Wi-Fi
password after "Guest" as an entity number). Missed: "renews on 12/31", "Load time: 1.24s",
"latency 23 ms", "age 37s", "03:00 last night", "Tide: high at 14:52", "Ticket 4471-22",
"Employee ID E-40912", "Pollen count this morning", "41 s since last ping", "Week 49 rota",
"ends Friday", "day 64", "position 5", "3 unread messages since your last visit", a weekly
special's price, an index "down 0.3% on the session". So the 52 of 52 above is a fitted figure:
on phrasings the rules have not seen, recall is still about a third, as it was in every earlier
round (45%, 35%, 10%, now 29%).

Its misses then shaped a second round of general patterns (so it is no longer held out either):
named measurements with a non-round value ("latency 23 ms", "Load time: 1.24s", "age 37s"), a
clock before the part of the day ("03:00 last night"), month/day as a deadline ("renews on
12/31"), "N <things> since your last ...", numbers right after their noun ("Ticket 4471-22") and
more nouns (employee, staff, agent, student), "this morning:" as a label, "queued at position 5",
index moves "down 0.3% on the session", "This week's special: ... $18.50". After it: 20 of 24;
still missed, and left so: a tide table's clocks, "Week 49 rota", "ends Friday", "day 64" (each
too close to stable text: opening hours, course weeks, weekly deadlines). `THIRD_HELD_OUT` was
written after that round.

`THIRD_HELD_OUT` (22 lines, written after 9aaaaa8, measured once, never tuned on): 8 of 22 (36%).
Found: "14 min ago", a build hash, "pid 22817", "this minute: 58", an ISO timestamp without
seconds, "currently -2°C", an invoice number, "started at 9:41 PM". Missed: a weekday with "3
December", an account balance, "Order #A-99812" (the line is flagged, for "shipped yesterday",
but not that part), "Unread notifications: 5", a jackpot, "currently evening", a flight delay,
"Reference: 2026/000418", "Rank #3 on today's leaderboard", "Battery at 64%", "Good afternoon",
"deployed Thursday", a cart total, an estimated wait. The honest figure for phrasings the rules
have not seen is therefore still about a third (29% and 36% on the two sets written after a
round of rules), however high the fitted sets score.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from heldout.busters import rules_on_line

from cachescope import lint

MODEL = "claude-sonnet-5"
PROMPT = "You are a helpful assistant for the support team.\n{}\nAnswer concisely.\n"


class Probe(NamedTuple):
    line: str  # the line of the prompt
    buster: str  # the part of it that changes between calls
    family: str  # what kind of buster it is


PROBES = [
    # the misses of FOURTH_SET, carried over
    Probe("Logged in as jdoe (uid 50231)", "uid 50231", "process_id"),
    Probe("Hello Maria! Last login: Tue Dec 1 22:04:11", "Tue Dec 1 22:04:11", "time"),
    Probe("Document version 17, saved 12/1/26", "12/1/26", "date"),
    Probe("Prompt assembled in 183 ms", "assembled in 183 ms", "duration"),
    Probe("It is the 338th day of the year.", "338th day of the year", "date"),
    Probe("Days since last incident: 4", "Days since last incident: 4", "counter"),
    Probe("Open incidents: 3 (as of this morning)", "as of this morning", "relative_time"),
    Probe("Membership no. 88-2231-7", "88-2231-7", "entity_id"),
    # log lines
    Probe("Dec  4 09:13:22 web-3 sshd[20417]: session opened", "09:13:22", "time"),
    Probe("worker[31877] picked up this conversation", "worker[31877]", "process_id"),
    Probe("Worker pid 48213 is handling this chat.", "pid 48213", "process_id"),
    Probe("uid=1042(jdoe) gid=1042(jdoe) groups=1042(jdoe)", "uid=1042", "process_id"),
    Probe("Served by thread tid 88213 on host api-2", "tid 88213", "process_id"),
    # ordinal and numbered days
    Probe("Today is day 12 of the free trial.", "day 12 of the free trial", "date"),
    Probe("We are on the 4th day of the sprint.", "4th day of the sprint", "date"),
    Probe("Advent calendar: day 4 of 24", "day 4 of 24", "counter"),
    Probe("Streak: 17 days in a row", "17 days in a row", "counter"),
    # short US/EU dates
    Probe("Coupon valid through 4/12/27.", "4/12/27", "date"),
    Probe("Printed 04.12.26 by the front desk.", "04.12.26", "date"),
    Probe("Snapshot 4-Dec-26 of the price list", "4-Dec-26", "date"),
    Probe("Statement date: 04 Dec", "04 Dec", "date"),
    Probe("Menu for Thu 4/12", "Thu 4/12", "date"),
    # durations
    Probe("Context built in 0.42 s.", "built in 0.42 s", "duration"),
    Probe("The last retrieval took 1.8 seconds.", "took 1.8 seconds", "duration"),
    Probe("Last sync took 2m 13s.", "took 2m 13s", "duration"),
    Probe("Median response time this hour: 412 ms", "412 ms", "duration"),
    # relative times
    Probe("Figures below were refreshed earlier today.", "earlier today", "relative_time"),
    Probe("Stock levels counted this afternoon.", "this afternoon", "relative_time"),
    Probe("Prices updated just now.", "updated just now", "relative_time"),
    Probe("Rates as of yesterday's close", "as of yesterday", "relative_time"),
    Probe("Order book last checked a few minutes ago.", "a few minutes ago", "relative_time"),
    # membership, account, ticket, claim numbers
    Probe("Account no. 0042-118-733", "0042-118-733", "entity_id"),
    Probe("Ref: TKT-2026-004417", "TKT-2026-004417", "entity_id"),
    Probe("Your claim reference is 5-2231-88.", "5-2231-88", "entity_id"),
    Probe("Loyalty card 6011 2231 0098 is linked.", "6011 2231 0098", "entity_id"),
    Probe("Policy number: HX 44 12 901", "HX 44 12 901", "entity_id"),
    # counters
    Probe("You have asked 6 questions today.", "6 questions today", "counter"),
    Probe("Reply 14 in this thread", "Reply 14 in this thread", "counter"),
    Probe("Retries since boot: 231", "Retries since boot: 231", "counter"),
    Probe("Hours since the last deploy: 7", "Hours since the last deploy: 7", "counter"),
    # version and build stamps
    Probe("Running v4.12.0+build.20261204", "build.20261204", "build_id"),
    Probe("Release 26.49.2-nightly.1204", "nightly.1204", "build_id"),
    Probe("Deployed as app@3.2.1 (pipeline #5571)", "pipeline #5571", "build_id"),
    # live values
    Probe("S&P 500: 6,031.22 (+0.4%)", "6,031.22 (+0.4%)", "live_data"),
    Probe("BTC/USD 97,310", "BTC/USD 97,310", "live_data"),
    Probe("Currently 14°C and overcast in Leeds.", "Currently 14°C", "live_data"),
    Probe("Gold spot $2,641.10/oz", "spot $2,641.10", "live_data"),
    Probe("Moon: 62% illuminated tonight", "62% illuminated tonight", "live_data"),
    # session and trace tokens
    Probe("X-Request-Id: 3f1c8e2a", "3f1c8e2a", "request_id"),
    Probe("sid=K7pQ2mX9", "K7pQ2mX9", "token"),
    Probe("Pod api-7f9c4d-x2kqp answered.", "api-7f9c4d-x2kqp", "request_id"),
    Probe("Conversation key ck-8812-aa31-f09d", "ck-8812-aa31-f09d", "token"),
]


def found(probe: Probe) -> bool:
    """A finding on the probe's line overlaps the changing part."""
    assert probe.buster in probe.line, probe
    start = probe.line.index(probe.buster) + 1
    end = start + len(probe.buster)
    return any(
        f.line == 2 and f.column < end and f.end_column > start
        for f in lint(PROMPT.format(probe.line), model=MODEL)
    )


def test_probes_are_many_and_varied() -> None:
    assert len(PROBES) >= 48
    assert len({p.line for p in PROBES}) == len(PROBES)
    assert len({p.family for p in PROBES}) >= 10


def test_probe_recall() -> None:
    missed = [p.line for p in PROBES if not found(p)]
    # 5 of 52 before the rules were widened for this set, 52 after (see the docstring)
    assert len(PROBES) - len(missed) >= 52, missed


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("Prompt assembled in 183 ms", "relative_time"),
        ("It is the 338th day of the year.", "date"),
        ("Document version 17, saved 12/1/26", "date"),
        ("Statement date: 04 Dec", "date"),
        ("Open incidents: 3 (as of this morning)", "relative_time"),
        ("Days since last incident: 4", "counter"),
        ("You have asked 6 questions today.", "counter"),
        ("Logged in as jdoe (uid 50231)", "process_id"),
        ("Dec  4 09:13:22 web-3 sshd[20417]: session opened", "process_id"),
        ("Membership no. 88-2231-7", "entity_id"),
        ("Running v4.12.0+build.20261204", "build_id"),
        ("S&P 500: 6,031.22 (+0.4%)", "live_data"),
        ("sid=K7pQ2mX9", "token_label"),
        ("Conversation key ck-8812-aa31-f09d", "request_id"),
        ("You are connected to edge node fra-17 (latency 23 ms)", "relative_time"),
        ("Last backup completed at 03:00 last night", "time"),
        ("Your subscription renews on 12/31.", "date"),
        ("Ticket 4471-22 assigned to Priya", "entity_id"),
        ("Dollar index 104.2, down 0.3% on the session", "live_data"),
    ],
)
def test_new_patterns_name_their_rule(line: str, rule: str) -> None:
    rules = rules_on_line(line, MODEL)
    assert rule in rules, rules


# Stable text next to each new pattern: plans, habits, configured ids, phone numbers, test cards.
@pytest.mark.parametrize(
    "clean",
    [
        "Most uploads are processed in 2 seconds; a timeout is reached in 30 s.",
        "The task should be done in 10 minutes. Each session lasts 30 minutes.",
        "Rent is due on the 1st day of the month.",
        "Day 1 of 3: arrive in Lisbon. On the 3rd day of the trip, visit the old town.",
        "Offices close on 25 December and 1 January; invoices go out on 1 Jan and 1 Jul.",
        "Run the container as uid 1000 (the first user) or uid 0; signal pid 1 to stop it.",
        "char buf[4096] is enough; table[1000] holds the rest.",
        "Use test card 4242 4242 4242 4242 in the sandbox.",
        "Call member services on 1-800-555-0142. Customer service number: 1-800-555-0142",
        "About 60% of web traffic today is mobile. Water boils at 100 °C.",
        "The minimum bid is $5.00; closing costs are usually $3,000.",
        "Deprecated since: 3.2. Python 3.11.7 and Node 20.11.1 are supported.",
        "If the customer says they will call back later today, note it.",
        "ISBN 978-1-449-37332-0; keys look like XXXX-XXXX-XXXX.",
        "    # ensure dual-stack is not disabled; ref #38907",
        "use its library ID in square brackets after the claim, like this: [LIB-0412].",
        "#     31 Dec  000         0             -1",
        "Set max age 60s on the cache. Target latency: 200 ms; keep ping under 100 ms.",
        "Closed on 12/25 and 1/15. Tasks run at 09:00 daily.",
        "Ages 18 and up; students aged 14-16; a staff of 12 people.",
        "Backwards compatible since the last 3 versions.",
    ],
)
def test_stable_text_near_the_new_patterns_is_not_flagged(clean: str) -> None:
    assert list(lint(clean, model=MODEL)) == []


# Written after 5b1989c and measured once (7 of 24), then tuned on (see the docstring).
HELD_OUT_AFTER = [
    Probe("Session opened 4 Dec 2026, 09:13 CET", "4 Dec 2026, 09:13 CET", "date"),
    Probe("Your subscription renews on 12/31.", "12/31", "date"),
    Probe("Load time: 1.24s", "1.24s", "duration"),
    Probe("Guest Wi-Fi password today: maple-4471", "maple-4471", "token"),
    Probe("Last backup completed at 03:00 last night", "03:00 last night", "time"),
    Probe("You are connected to edge node fra-17 (latency 23 ms)", "latency 23 ms", "duration"),
    Probe("This week's special: salmon, $18.50 (ends Sunday)", "This week's special", "live_data"),
    Probe("Ticket 4471-22 assigned to Priya", "4471-22", "entity_id"),
    Probe("Conversation #88213", "#88213", "counter"),
    Probe("Inventory snapshot taken 2 hrs ago", "2 hrs ago", "relative_time"),
    Probe("Dollar index 104.2, down 0.3% on the session", "104.2, down 0.3%", "live_data"),
    Probe("Tide: high at 14:52, low at 21:07", "14:52", "time"),
    Probe("Air quality index in Delhi right now: 212 (very poor)", "right now: 212", "live_data"),
    Probe("You have 3 unread messages since your last visit.", "3 unread messages", "counter"),
    Probe("Employee ID E-40912 (Jordan Lee)", "E-40912", "entity_id"),
    Probe("Pollen count this morning: high", "this morning", "relative_time"),
    Probe("It's been 9 days since your last order.", "9 days since your last order", "counter"),
    Probe("Job queued at position 5", "position 5", "counter"),
    Probe("Heartbeat OK, 41 s since last ping", "41 s since last ping", "relative_time"),
    Probe("Week 49 rota: Sam on call", "Week 49", "date"),
    Probe("Fetched from cache (age 37s)", "age 37s", "duration"),
    Probe("UID: 7731-AX-19", "7731-AX-19", "entity_id"),
    Probe("Your trial ends Friday.", "ends Friday", "date"),
    Probe("Q4 FY26, day 64", "day 64", "date"),
]


def assert_found_at_least(probes: list[Probe], earlier: set[str], floor: int) -> None:
    """A held-out set: at least 15 lines, none seen in an earlier set, `floor` of them found."""
    assert len(probes) >= 15
    assert not {p.line for p in probes} & earlier
    found_lines = [p.line for p in probes if found(p)]
    assert len(found_lines) >= floor, sorted({p.line for p in probes} - set(found_lines))


def test_held_out_after_the_rules() -> None:
    # 7 of 24 when measured, 20 after the second round (see the docstring)
    assert_found_at_least(HELD_OUT_AFTER, {p.line for p in PROBES}, 20)


# Written after 9aaaaa8 and measured once, never tuned on (see the docstring).
THIRD_HELD_OUT = [
    Probe("Morning briefing for Thursday, 3 December", "Thursday, 3 December", "date"),
    Probe("Prices last refreshed 14 min ago", "14 min ago", "relative_time"),
    Probe("Your account balance is $1,204.77.", "$1,204.77", "counter"),
    Probe("Order #A-99812 shipped yesterday", "#A-99812", "entity_id"),
    Probe("Build 7f3c9e1 deployed 2 hours ago", "7f3c9e1", "build_id"),
    Probe("Server: api-eu-3 | pid 22817 | up 3d 4h", "pid 22817", "process_id"),
    Probe("Requests remaining this minute: 58", "this minute: 58", "counter"),
    Probe("Last sync: 2026-12-04T09:13", "2026-12-04T09:13", "time"),
    Probe("Unread notifications: 5", "Unread notifications: 5", "counter"),
    Probe("Lottery jackpot now stands at €41 million", "€41 million", "live_data"),
    Probe("It is currently evening in the user's time zone.", "currently evening", "relative_time"),
    Probe("Flight BA117 is delayed by 40 minutes.", "delayed by 40 minutes", "live_data"),
    Probe("Reference: 2026/000418", "2026/000418", "entity_id"),
    Probe("Snow expected from 4pm; currently -2°C", "currently -2°C", "live_data"),
    Probe("Rank #3 on today's leaderboard", "Rank #3", "counter"),
    Probe("Invoice INV-2026-1204-0031 attached", "INV-2026-1204-0031", "entity_id"),
    Probe("Battery at 64%", "64%", "live_data"),
    Probe("Good afternoon, Sam!", "Good afternoon", "relative_time"),
    Probe("Version 3.8.1 (deployed Thursday)", "deployed Thursday", "date"),
    Probe("Cart total: €83.40 (3 items)", "€83.40 (3 items)", "counter"),
    Probe("Estimated wait time: about 12 minutes", "about 12 minutes", "live_data"),
    Probe("Chat started at 9:41 PM", "9:41 PM", "time"),
]


def test_third_held_out_set() -> None:
    earlier = {p.line for p in PROBES} | {p.line for p in HELD_OUT_AFTER}
    # 8 of 22 when measured (see the docstring): a floor against regressions, far from the target
    assert_found_at_least(THIRD_HELD_OUT, earlier, 8)


def changed(buster: str) -> str:
    """The same buster on the next call: its first digit moved on, or (no digit) its case."""
    for i, char in enumerate(buster):
        if char.isdigit():
            return buster[:i] + str((int(char) + 1) % 10) + buster[i + 1 :]
    flipped = buster.swapcase()
    return flipped if flipped != buster else buster + "!"


def params_of(line: str) -> dict[str, Any]:
    text = PROMPT.format(line) + "Background. " * 400  # above every model's minimum
    return {
        "model": MODEL,
        "max_tokens": 8,
        "system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hello"}],
    }


@pytest.mark.parametrize("probe", PROBES + HELD_OUT_AFTER + THIRD_HELD_OUT, ids=lambda p: p.line)
def test_the_previous_render_finds_any_value_that_changed(probe: Probe) -> None:
    """Whatever the phrasing, a value that changed between two renders is found where it is:
    by its pattern, or else as `prefix_changed`, named as it is now and as it was (the
    patterns miss about two in three unseen phrasings)."""
    before = params_of(probe.line)
    line = probe.line.replace(probe.buster, changed(probe.buster), 1)
    start = line.index(changed(probe.buster)) + 1
    end = start + len(probe.buster)
    findings = lint(params_of(line), previous=before)
    at = [f for f in findings if f.line == 2 and f.column < end and f.end_column > start]
    assert at, findings
    diffs = [f for f in findings if f.rule == "prefix_changed"]
    assert len(diffs) <= 1, diffs
    if diffs:  # the diff names the changed value, where no pattern flags it already
        (finding,) = diffs
        assert finding in at and finding.text and finding.text in line, finding
        assert "previous render (was " in finding.fix, finding
        assert not [
            f
            for f in findings
            if f is not finding
            and f.line == 2
            and f.column < finding.end_column
            and f.end_column > finding.column
        ]
    else:  # a pattern flags the changed value: the diff does not say it again
        assert any(f.rule != "prefix_changed" for f in at), findings
