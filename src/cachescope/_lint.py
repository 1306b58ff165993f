"""Lint: cache-busters in the cached part of a prompt, found before any call is made.

Everything up to and including the last breakpoint is read from cache only when it is byte-for-byte
the same on every call (spec §1.1, §2). `lint` looks there for text that is likely to change between
calls — dates and times, weekday phrases, unix epochs, UUIDs, request and trace IDs, random-looking
numbers, counters, "current time" labels, measured durations, user/process/account numbers, live
prices and weather — and, given the `previous` render, for JSON whose key order changed,
re-ordered tools and breakpoints on blocks that changed. It also checks the layout:
a cached prefix below the model's minimum, more than 20 blocks between breakpoints, a dynamic layer
in the system prompt ahead of cached history, and a 1h breakpoint after a 5m one.

Each `Finding` names the rule, the layer, the line and column span inside the block and the fix in
one sentence. `lint` never raises on odd input: what it cannot read it skips.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import orjson

from cachescope._render import mimebundle
from cachescope.stability import LOOKBACK, _model_facts, _Side, compare

__all__ = ["Finding", "Findings", "lint"]

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    """One likely cache-buster or layout mistake.

    Attributes
    ----------
    rule:
        Rule id, e.g. `timestamp`, `uuid`, `below_minimum`.
    severity:
        "error" (changes on every call or breaks caching outright) or "warning" (likely to).
    layer:
        The prompt layer (or "tools" / "history" / the block path when no layer is known).
    line, column, end_column:
        1-based line and column span of the match inside its block (0 for layout findings).
    text:
        The matched text (clipped to 80 characters).
    fix:
        How to fix it, in one sentence.
    path:
        Where the block sits in the request (`system.0`, `messages.3.content.1`).
    """

    rule: str
    severity: str
    layer: str | None
    line: int
    column: int
    end_column: int
    text: str
    fix: str
    path: str = ""

    def __str__(self) -> str:
        where = self.layer or self.path or "request"
        at = f":{self.line}:{self.column}" if self.line else ""
        shown = f" {self.text!r}" if self.text else ""
        return f"{where}{at} {self.severity} [{self.rule}]{shown} — {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Findings(list[Finding]):
    """The findings of one `lint` run; renders as text and as an escaped HTML table."""

    def __str__(self) -> str:
        if not self:
            return "No cache-busters found."
        return "\n".join(str(finding) for finding in self)

    def _repr_html_(self) -> str:
        esc = html.escape
        if not self:
            return "<p>No cache-busters found.</p>"
        rows = "".join(
            "<tr>"
            f"<td>{esc(f.severity)}</td><td><code>{esc(f.rule)}</code></td>"
            f"<td>{esc(f.layer or f.path or '')}</td>"
            f"<td>{f.line}:{f.column}-{f.end_column}</td>"
            f"<td><code>{esc(f.text)}</code></td><td>{esc(f.fix)}</td>"
            "</tr>"
            for f in self
        )
        head = "<tr><th>severity</th><th>rule</th><th>layer</th><th>where</th><th>text</th><th>fix</th></tr>"
        return f'<table class="cachescope-lint">{head}{rows}</table>'

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self) if not cycle else "Findings(...)")

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, str]:
        return mimebundle(str(self), self._repr_html_(), include, exclude)

    def rules(self) -> list[str]:
        return [finding.rule for finding in self]


# --------------------------------------------------------------------------------------------
# text rules: (rule id, severity, pattern, fix)

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DAYS = r"(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?"
_MOVE = "move it to the dynamic layer (after the last breakpoint)"

_TEXT_RULES: list[tuple[str, str, str, str]] = [
    (
        "timestamp",
        ERROR,
        r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2}| ?UTC)?",
        f"A timestamp changes on every call: {_MOVE}.",
    ),
    (
        "date",
        WARNING,
        r"\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b",
        f"A date in the cached prefix changes daily: {_MOVE}.",
    ),
    (
        "date_written",
        WARNING,
        rf"\b(?:{_DAYS},? )?{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)\d{{2}}\b"
        rf"|\b\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS},? (?:19|20)\d{{2}}\b"
        r"|\b\d{1,2}/\d{1,2}/(?:19|20)\d{2}\b"
        r"|\b\d{1,2}\.\d{1,2}\.(?:19|20)\d{2}\b"
        rf"|\b\d{{1,2}}-{_MONTHS}-(?:(?:19|20)?\d{{2}})\b"
        r"|\b(?:19|20)\d{2}[./](?:0?[1-9]|1[0-2])[./](?:0?[1-9]|[12]\d|3[01])\b",
        f"A written date in the cached prefix changes daily: {_MOVE}.",
    ),
    (
        "time",
        ERROR,
        r"\b(?:[01]?\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?\b(?: ?(?:[AaPp]\.?[Mm]\.?|UTC|GMT|[A-Z]{3,4}\b))?"
        r"|\b(?:1[0-2]|0?[1-9])(?::[0-5]\d)? ?[AaPp]\.?[Mm]\.?(?![A-Za-z0-9])"
        r"|\b(?:[01]?\d|2[0-3]):[0-5]\d ?(?:UTC|GMT|[ECMP][SD]T|CET|CEST|BST|IST|JST)\b"
        r"|(?i:\b(?:right now|now|currently|time is|it is|it's|as of)\b[^\n.\d]{0,16}?)"
        r"\b(?:[01]?\d|2[0-3]):[0-5]\d\b"
        # a clock read out for a place: "Local time in Perth: 08:02", "server clock reads 09:14"
        r"|(?i:\b(?:local time|time in|time at|clock (?:reads|shows|says))\b[^\n.\d]{0,24}?)"
        r"\b(?:[01]?\d|2[0-3]):[0-5]\d\b"
        # when something just happened: "started 22:10", "yesterday at 17:45"
        r"|(?i:\b(?:started|updated|generated|refreshed|synced|fetched|created|last seen|yesterday"
        r"|today|tonight)(?: at| on)? )(?:[01]?\d|2[0-3]):[0-5]\d\b"
        # ... or before it: "at 03:00 last night", "sent at 08:30 today"
        r"|\b(?:[01]?\d|2[0-3]):[0-5]\d(?= (?i:last night|tonight|today|yesterday"
        r"|this (?:morning|afternoon|evening))\b)",
        f"A clock time changes on every call: {_MOVE}.",
    ),
    (
        "weekday",
        ERROR,
        rf"(?i:\b(?:today|tonight|it|now)(?:'s| is)(?: a)? {_DAYS}\b)|\b{_DAYS},? (?:the )?\d{{1,2}}(?:st|nd|rd|th)\b"
        rf"|(?i:\bhappy {_DAYS}\b)"
        rf"|\b{_DAYS} (?:morning|afternoon|evening|night)\b"  # "mornings" is a habit, not a day
        rf"|\b{_DAYS},? \(?\d{{1,2}}[/.]\d{{1,2}}\b"
        rf"|\b{_DAYS},? {_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?\b",
        f"A weekday phrase changes daily: {_MOVE}.",
    ),
    (
        "current_time_label",
        ERROR,
        r"(?i:\b(?:current|today'?s|local|server|request|now)[ _-]?(?:date|time|datetime|timestamp|day)"
        # `localtime=False` is a keyword argument, not a value
        r"(?: is)?[ \t]*[:=][ \t]*(?!(?:False|True|None|null|true|false)\b)[^\s=:]\S*)",
        "A 'current time' value is different on every call: move the whole line to the dynamic layer.",
    ),
    (
        "epoch",
        WARNING,
        r"(?<![\w.\-/])1[7-9]\d{8}(?:\d{3})?(?![\w\-/]|\.\w)",
        f"This looks like a unix epoch time, which changes on every call: {_MOVE}.",
    ),
    (
        "uuid",
        ERROR,
        r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
        f"A UUID is usually unique per request or session: {_MOVE}.",
    ),
    (
        "request_id",
        ERROR,
        # a generated suffix has a digit or a capital; `run_pipeline` and `call_count` are code
        r"\b(?:req|msg|toolu|trace|span|run|sess|evt|chatcmpl|call|conv|thread|chat|job|task|batch"
        r"|cart|order|cus|sub|inv)"
        r"_(?=[A-Za-z]*\d|[a-z\d]*[A-Z])[A-Za-z0-9]{8,}\b",
        f"A request or trace ID is new on every call: {_MOVE}.",
    ),
    (
        "request_id_label",
        ERROR,
        r"(?i:\b(?:request|trace|span|correlation|session|run|operation|job|task|event|instance|device|client)"
        r"[ _-]?id\s*[:=]\s*[\"']?)[A-Za-z0-9][A-Za-z0-9_\-]{7,}",
        f"A request or trace ID is new on every call: {_MOVE}.",
    ),
    (
        "hex_id",
        WARNING,
        r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{16,}\b",
        f"A long hex string looks like a per-call ID or nonce: {_MOVE}.",
    ),
    (
        "random_number",
        WARNING,
        r"(?<![\w.])0\.\d{7,}\b"
        r"|(?i:\b(?:seed|nonce|random|rand|salt|token|otp)\w*\s*[:=]\s*)\d{4,}\b"
        r"|(?i:\b(?:seed|nonce|salt)\s+)\d{6,}\b",
        f"A random-looking number will differ between calls: {_MOVE}.",
    ),
    # Counters: one pattern per phrasing, each searched only around its own anchors.
    (
        "counter",
        WARNING,
        r"(?i:\b(?:request|call|turn|message|attempt|iteration|retry|visit(?:or)?|session|conversation)"
        r"\s*(?:#|no\.|number|count)\s*:?\s*\d+\b)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "counter_ordinal",
        WARNING,
        r"(?i:\b(?:this is (?:your|the) )(?:\d+(?:st|nd|rd|th)) (?:request|call|visit|message|turn|attempt)\b)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "counter_so_far",
        WARNING,
        r"(?i:\b(?:calls?|requests?|messages?|turns?|visits?|attempts?|tokens?|queries|searches|steps?)"
        r"(?: used)? (?:so far|made|sent|remaining)\s*[:=]\s*\d[\d,]*)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "counter_left",
        WARNING,
        r"(?i:\b\d[\d,]* (?:more )?(?:calls?|requests?|messages?|turns?|visits?|attempts?|tokens|credits?"
        r"|queries|searches|steps?) (?:remaining|left)\b)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "counter_of",
        WARNING,
        r"(?i:\b(?:turn|message|request|call|step|iteration|exchange|reply|post|comment|question"
        r"|answer|round|prompt) \d+ (?:of|in) (?:the|this) "
        r"(?:conversation|session|chat|thread)\b)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "counter_quota",
        WARNING,
        r"(?i:\b(?:remaining|quota|balance|credits?|budget)"
        r"(?: (?:quota|tokens|credits|budget|left|remaining|available|used))?"
        r"\s*[:=]\s*\$?\d[\d,.]*)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "random_id",
        WARNING,
        r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{12,}(?![A-Za-z0-9_\-])",
        f"A random-looking identifier is usually new per call or per session: {_MOVE}.",
    ),
    (
        "relative_time",
        WARNING,
        r"(?i:\b\d+ (?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?) ago\b)",
        f"A relative time ('3 minutes ago') is stale on the next call: {_MOVE}.",
    ),
    (
        "elapsed",
        WARNING,
        r"(?i:\b(?:uptime|elapsed(?: time)?|running for|up for|online for)\s*[:=]?\s*"
        r"\d+(?:\.\d+)?\s*(?:ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)\b)",
        f"An elapsed time or uptime grows between calls: {_MOVE}.",
    ),
    (
        "date_week",
        WARNING,
        r"(?i:\bweek \d{1,2},? (?:of )?(?:19|20)\d{2}\b)|\b(?:19|20)\d{2}-W(?:0[1-9]|[1-4]\d|5[0-3])\b"
        r"|(?i:\bweek \d{1,2},? day \d{1,3}\b)",
        f"A week of the year in the cached prefix changes weekly: {_MOVE}.",
    ),
    (
        "entity_id",
        WARNING,
        # a user, ticket, order or account named by a number: "user #48213", "Ticket ID: 88231-A",
        # "Order number: PO-4846797", "account acct-90952396", "Customer reference N5MF54NDOL"
        r"(?i:\b(?:user|customer|member(?:ship)?|caller|account|client|ticket|order|case|incident"
        r"|booking|reservation|invoice|transaction|cart|guest|player|patient|subscriber|tenant"
        # "ref #38907" in code is an issue link: "ref" only as a label ("Ref: ...", "ref. ...")
        r"|claim|policy|policies|card|reference|ref(?=[.:]| no)|shipment|parcel|tracking"
        r"|employee|staff|agent|student|applicant|badge)s?\b"
        r"[^\n\d#(\[]{0,24}?)"
        r"(?:#:?\s?\d{3,}\b|\b[A-Za-z]{1,6}[-_]?\d{4,}\b|\b\d{5,}(?:-[A-Za-z0-9]{1,4})?\b"
        r"|\b(?=[A-Z]*\d)(?=\d*[A-Z])[A-Z0-9]{8,}\b"
        # digits in groups: "no. 88-2231-7", "number: HX 44 12 901", "card 6011 2231 0098" (a
        # label or four-digit groups, six digits or more, no phone number: see _entity_number)
        r"|(?<![\w+-])(?P<grouped>(?:[A-Z]{1,4}[ -])?\d{1,6}(?:[ -]\d{1,6}){1,4})\b(?![-/.]\d))",
        f"A user, ticket or order number differs between sessions: {_MOVE}.",
    ),
    (
        "build_id",
        WARNING,
        # also stamps such as "+build.20261204", "nightly.1204", "pipeline #5571"
        r"(?i:\b(?:build|commit|revision|rev|changeset|git sha|nightly|snapshot|pipeline)\b"
        r"\s*[:#=.]?\s*#?)"
        r"(?:(?:[A-Za-z]+[-_])?\d{3,}\b|(?=[a-f]*\d)(?=\d*[a-f])[0-9a-f]{7,40}\b)",
        f"A build number or commit changes with every deploy: {_MOVE}.",
    ),
    (
        "date_no_year",
        WARNING,
        rf"\b{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)\b|\b\d{{1,2}}(?:st|nd|rd|th) (?:of )?{_MONTHS}\b"
        rf"|(?i:\b(?:today|tonight|now|as of|dated?)\b[^\n.\d]{{0,16}}?)(?-i:{_MONTHS}\.? \d{{1,2}}\b)"
        # "Statement date: 4 Dec", "04 Dec" (padded by a template; "closes on 25 December" is not)
        r"|(?:\b0[1-9]|(?i:\b(?:date|dated|as of|as at)\s*[:=]?\s*)(?:0?[1-9]|[12]\d|3[01]))"
        rf" {_MONTHS}\b(?![.,]?\s*[-\d])",
        f"A date in the cached prefix changes daily: {_MOVE}.",
    ),
    (
        "counter_today",
        WARNING,
        # "Today's lucky number: 7731", "Requests handled today: 30007", "Queue length right now: 24"
        r"(?i:\b(?:today|tonight|this week|this month)'?s(?: [a-z-]+){1,3}\s*(?:is|was|[:=])"
        r"[^\n\d]{0,24}?[$#]?\d(?:[\d,.]*\d)?"
        r"|\b(?:today|this (?:hour|minute|week|month|session)|right now|so far|at the moment"
        r"|in the (?:last|past) (?:minute|hour|day|week|24 hours))"
        r"\s*[:=]\s*\d[\d,]*)",
        f"A count or value of the day changes between calls: {_MOVE}.",
    ),
    (
        "counter_has",
        WARNING,
        r"(?i:\b(?:this|the) (?:chat|conversation|thread|session) (?:now )?(?:has|contains|is at) "
        r"\d[\d,]* (?:messages|turns|exchanges|replies|tokens)\b)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "counter_queue",
        WARNING,
        r"(?i:\b(?:caller|customer|person|visitor|user|number|position)\s*#?\d+ in (?:the )?"
        r"(?:queue|line)\b|\bqueue (?:position|length|size|depth)\b[^\n\d]{0,16}?\d+"
        r"|\bposition in (?:the )?(?:queue|line)\b[^\n\d]{0,8}?\d+"
        r"|\bqueued\b[^\n\d]{0,16}?(?:position|number|place|#)\s*#?\d+)",
        f"A queue position changes on every call: {_MOVE}.",
    ),
    (
        "countdown",
        WARNING,
        r"(?i:\b(?:expires?|ends?|closes?|starts?|begins?|resets?|renews?|due|launch(?:es)?)\s+in\s+"
        r"\d+\s*(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|[smhd])\b"
        r"(?:,?\s*(?:and\s+)?\d+\s*(?:seconds?|secs?|minutes?|mins?|[smh])\b)?"
        r"|\b\d+\s*(?:seconds?|minutes?|hours?|days?|weeks?) (?:left|remaining|to go) "
        r"(?:until|till|before|to)\b)",
        f"A countdown is stale on the next call: {_MOVE}.",
    ),
    (
        "live_data",
        WARNING,
        r"(?i:\bweather\b[^\n]{0,40}?-?\d{1,3} ?°[CF]?|\bhumidity\s*[:=]?\s*\d{1,3} ?%"
        r"|\b(?:trading|trades|traded) at \$?\d[\d,]*(?:\.\d+)?|[+-]\d+(?:\.\d+)?% (?:today|on the day)\b"
        r"|\b(?:temperature|temp) (?:outside|now|currently|right now|today)\b[^\n\d]{0,8}?-?\d{1,3} ?°)"
        # a currency pair's rate: "EUR/USD 1.0842"
        r"|\b[A-Z]{3}/[A-Z]{3}\s*[:=]?\s*(?:\d+\.\d{2,}|\d{1,3}(?:,\d{3})+(?:\.\d+)?)",
        "Live data (weather, prices) is different on every call: fetch it into the dynamic layer "
        "(after the last breakpoint).",
    ),
    (
        "ab_bucket",
        WARNING,
        r"(?i:\b(?:bucket|variant|cohort|experiment)\s*[:=]\s*)[A-Za-z][A-Za-z0-9]*(?:[_\-][A-Za-z0-9]+)*"
        r"[_\-][A-Za-z0-9]{4,}\b",
        f"An experiment bucket is assigned per user or session: {_MOVE}.",
    ),
    (
        "token_label",
        ERROR,
        r"(?i:\b(?:session|sid|nonce|token|csrf|state|cursor|signature|cookie|bearer)\b(?:\s?[:=]\s*|\s)[\"']?(?!0[xX]))"
        r"(?P<value>(?=[A-Za-z_\-+/]*\d)[A-Za-z0-9_\-+/]{8,})={0,2}",
        f"A session token or nonce is new per session or call: {_MOVE}.",
    ),
    (
        "current_value",
        WARNING,
        # "Current moon phase: waxing gibbous (61%)", "Your loyalty points: 1,482"
        r"(?i:\b(?:current|your) (?:[a-z]+ ){0,2}[a-z]+\s*[:=]\s*)[^\n\d]{0,24}?[$#]?\d[\d,.]*%?",
        f"A current or per-user value changes between calls: {_MOVE}.",
    ),
    (
        "duration",
        WARNING,
        # how long something took on this call: "assembled in 183 ms", "took 2m 13s"
        # (not a habit: "are processed in 2 seconds", "should be done in 10 minutes")
        r"(?i:(?<!are )(?<!is )(?<!be )(?<!usually )(?<!typically )(?<!normally )"
        r"\b(?:took|lasted|(?:[a-z]+ed|built|ran|run|done|made) in)\s+(?:about |only |just |~)?"
        r"\d+(?:\.\d+)?\s?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?)\b"
        r"(?:,?\s*\d+(?:\.\d+)?\s?(?:ms|s|secs?|seconds?)\b)?"
        # a measurement by its name: "latency 23 ms", "Load time: 1.24s", "(age 37s)"; not a
        # setting ("max age 60s") or a round target ("latency: 200 ms", see _measured)
        r"|(?<!max )(?<!max-)(?<!min )(?<!min-)\b(?:latency|load time|response time|render time"
        r"|round trip|rtt|ttfb|ping|age)\s*[:=]?\s*~?(?P<measured>\d+(?:\.\d+)?)\s?"
        r"(?:ms|s|secs?|seconds?)\b)",
        f"A measured duration differs on every call: {_MOVE}.",
    ),
    (
        "day_ordinal",
        WARNING,
        # "the 338th day of the year"; said of now: "Today is day 12 of the free trial",
        # "We are on the 4th day of the sprint", "Advent calendar: day 4 of 24" (an itinerary's
        # "Day 1 of 3" or "on the 1st day of the month" is a plan, not a date)
        r"(?i:\b(?:\d{1,3}(?:st|nd|rd|th) day|day \d{1,3}) of (?:the |this )?year\b"
        r"|(?:\b(?:today is|it is|it's|we are (?:on|in)|you are (?:on|in)|currently|now|this is)"
        r"|:) (?:the )?(?:\d{1,3}(?:st|nd|rd|th) day|day \d{1,3}) of (?!(?:each|every|a)\b)"
        r"(?:\d{1,3}\b|(?:the |this |your |our )?(?:[a-z-]+ ){0,2}?[a-z]+))",
        f"The day of a year, trial or sprint changes daily: {_MOVE}.",
    ),
    (
        "date_short",
        WARNING,
        # a numeric date with a two-digit year: "12/1/26", "04.12.26"
        r"(?<![\w/.\-])(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|[12]\d|3[01])/\d{2}(?![\w/]|[.,]\d)"
        r"|(?<![\w/.\-])(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\.\d{2}(?![\w.\-]|,\d)"
        # without a year, when it cannot be a fraction, as a deadline: "renews on 12/31", "until
        # 15/4" ("closed on 12/25" is a yearly holiday)
        r"|(?i:\b(?:until|till|through|thru|by|due|renews?|expires?|ends?|dated?|as of)(?: on)?\s+)"
        r"(?:(?:0?[1-9]|1[0-2])/(?:1[3-9]|2\d|3[01])|(?:1[3-9]|2\d|3[01])/(?:0?[1-9]|1[0-2]))"
        r"(?![\w/]|[.,]\d)",
        f"A date in the cached prefix changes daily: {_MOVE}.",
    ),
    (
        "relative_words",
        WARNING,
        # "as of this morning", "refreshed earlier today", "updated just now", "a few minutes ago"
        r"(?i:\bearlier (?:today|tonight|this (?:morning|afternoon|evening|week))\b"
        r"|\b(?:as of|as at|since|[a-z]+ed) (?:this (?:morning|afternoon|evening)|yesterday"
        r"|last night|just now|moments ago)\b"
        r"|\b(?:a|an|one|a few|a couple of|several|some|two|three|few) (?:moments?|seconds?|minutes?"
        r"|hours?|days?) ago\b"
        r"|\b(?:tonight|this (?:morning|afternoon|evening))\s*[:=])",
        f"A relative time ('as of this morning') is stale on the next call: {_MOVE}.",
    ),
    (
        "counter_since",
        WARNING,
        # "Days since last incident: 4", "Retries since boot: 231", "12 days since the last outage"
        r"(?i:\b[a-z]+ since\b[^\n:=.]{1,32}?[:=]\s*\d[\d,]*\b(?!\.\d)"
        # "41 s since last ping", "3 unread messages since your last visit"
        r"|\b\d[\d,]*(?:\.\d+)? ?(?:[a-z]+ ){0,2}?[a-z]+ since (?:the |our |your )?(?:last|previous)\b)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "counter_period",
        WARNING,
        # "You have asked 6 questions today", "Streak: 17 days"
        r"(?i:\b\d[\d,]* (?:[a-z]+ ){0,2}?[a-z]+s (?:so far )?(?:today|tonight|this (?:hour|morning"
        r"|afternoon|evening|week|month|session|conversation|chat))\b"
        r"|\b(?:streak|tally|karma)\b\s*(?:[:=]|is|of)?\s*\d[\d,]*)",
        f"A counter goes up on every call: {_MOVE}.",
    ),
    (
        "process_id",
        WARNING,
        # "uid 50231", "pid=48213", "sshd[20417]: ", "worker[31877] picked up"
        r"(?i:\b(?P<kind>e?uid|gid|pid|ppid|tid|process id|thread id)\b\s*(?:[:=#]\s*|is\s+)?)"
        r"(?P<id>\d{2,7})\b"
        r"|\b[a-z][a-z0-9_.-]{1,24}\[(?P<tag>\d{4,7})\](?=: | [a-z]{2,})",
        f"A process, thread or user id differs between runs and users: {_MOVE}.",
    ),
    (
        "live_quote",
        WARNING,
        # "6,031.22 (+0.4%)", "Currently 14°C", "Gold spot $2,641.10", "62% illuminated tonight"
        r"\d[\d,]*(?:\.\d+)?\s*\(\s*[+-]\d+(?:\.\d+)?\s*%\s*\)"
        r"|(?i:\b(?:currently|now|right now|today|tonight|outside|it'?s|it is)\b[^\n\d.]{0,16}?"
        r"-?\d{1,3}(?:\.\d)? ?°[CF]?)"
        r"|(?i:\b(?:spot|closing|last trade)(?: price)?\b\s*(?:[:=]|at|of|is)?\s*)"
        r"[$€£¥]\d[\d,]*(?:\.\d+)?"
        r"|(?i:\b\d{1,3}(?:\.\d+)?\s?%[^\n.;]{0,24}?\b(?:tonight|right now"
        r"|this (?:morning|afternoon|evening|hour))\b"
        # "down 0.3% on the session", "up 2% since the open"
        r"|\b(?:up|down)\s\d+(?:\.\d+)?\s?% (?:today|on the (?:day|session|week)|since (?:the )?open"
        r"|this (?:morning|week))\b)",
        "Live data (prices, weather) is different on every call: fetch it into the dynamic layer "
        "(after the last breakpoint).",
    ),
    (
        "hex_groups",
        ERROR,
        # "req 7f3a-11ef-9c2b", "ck-8812-aa31-f09d": groups of hex digits, letters and digits mixed
        r"\b(?:[A-Za-z]{1,6}[-_])?(?=[0-9a-fA-F-]*[a-fA-F])(?=[0-9a-fA-F-]*\d)"
        r"[0-9a-fA-F]{4}(?:-[0-9a-fA-F]{4}){2,}\b",
        f"A request or trace ID is new on every call: {_MOVE}.",
    ),
]

# Where each rule can possibly match, as literals found with C-speed `str.find` in a "shape" of
# the text: `low` is lower-cased with every digit turned into 0, `hex` has every hex digit turned
# into h. Only the few windows around those anchors are handed to the rule's regex, so a 5 MB
# prompt lints in a fraction of a second.
_MONTH_ANCHORS = (
    "/0000",
    ".0000",
    "0000.0",
    "0000/0",
    *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
)
_ANCHORS: dict[str, tuple[tuple[str, str], ...]] = {
    "timestamp": (("low", "0000-00-00"),),
    "date": (("low", "0000-00-00"),),
    "date_written": tuple(("low", a) for a in _MONTH_ANCHORS),
    "date_week": (("low", "week 0"), ("low", "0000-w0")),
    "time": (
        ("low", "0:00"),  # also where H:MM:SS starts (the gate lets those through)
        *(("low", f"0{gap}{half}") for gap in ("", " ") for half in ("am", "pm", "a.m", "p.m")),
    ),
    "weekday": (
        *(
            ("low", f"{day}day")
            for day in ("mon", "tues", "wednes", "thurs", "fri", "satur", "sun")
        ),
        *(("low", f"0{suffix}") for suffix in ("th", "st", "nd", "rd")),
        ("low", "0/0"),  # "Thu 4/12"
    ),
    "current_time_label": (("low", "date"), ("low", "time"), ("low", "day")),
    "epoch": (("low", "0000000000"),),
    "uuid": (("hex", "hhhhhhhh-hhhh-hhhh"),),
    "request_id": tuple(
        ("low", a)
        for a in (
            "conv_",
            "thread_",
            "chat_",
            "job_",
            "task_",
            "batch_",
            "req_",
            "msg_",
            "toolu_",
            "trace_",
            "span_",
            "run_",
            "sess_",
            "evt_",
            "chatcmpl",
            "call_",
            *("cart_", "order_", "cus_", "sub_", "inv_"),
        )
    ),
    "request_id_label": tuple(("low", a) for a in ("id:", "id=", "id =", "id :")),
    "hex_id": (("hex", "hhhhhhhhhhhhhhhh"),),
    "random_number": (
        ("low", "0.0000000"),
        *(("low", a) for a in ("seed", "nonce", "rand", "salt", "token", "otp")),
    ),
    "counter": tuple(("low", a) for a in ("#", "no.", "number", "count")),
    "counter_ordinal": (("low", "this is "),),
    "counter_so_far": tuple(("low", a) for a in ("so far", " made", " sent", "remaining")),
    "counter_of": tuple(("low", a) for a in ("conversation", "session", "chat", "thread")),
    "counter_left": (("low", " remaining"), ("low", " left")),
    "elapsed": tuple(
        ("low", a) for a in ("uptime", "elapsed", "running for", "up for", "online for")
    ),
    "counter_quota": tuple(
        ("low", a) for a in ("remaining", "quota", "balance", "credit", "budget")
    ),
    "relative_time": (("low", " ago"),),
    "random_id": (("cls", "a0a"), ("cls", "0a0")),
    "entity_id": tuple(
        ("low", a)
        for a in (
            *("user", "customer", "member", "caller", "account", "client", "ticket", "order"),
            *("case", "incident", "booking", "reservation", "invoice", "transaction", "cart"),
            *("guest", "player", "patient", "subscriber", "tenant"),
            *("claim", "polic", "card", "ref", "shipment", "parcel", "tracking"),
            *("employee", "staff", "agent", "student", "applicant", "badge"),
        )
    ),
    "build_id": tuple(
        ("low", a)
        for a in (
            *("build", "commit", "revision", "rev", "changeset", "git sha"),
            *("nightly", "snapshot", "pipeline"),
        )
    ),
    "date_no_year": (
        *(("low", a) for a in _MONTH_ANCHORS[4:]),
        *(("low", f"0{suffix}") for suffix in ("th", "st", "nd", "rd")),
    ),
    "counter_today": tuple(
        ("low", a)
        for a in (
            *("today", "this hour", "this minute", "this week", "this month", "this session"),
            *("right now", "so far", "at the moment", "the last ", "the past "),
        )
    ),
    "counter_has": tuple(("low", a) for a in ("chat ", "conversation ", "thread ", "session ")),
    "counter_queue": (
        ("low", " in the queue"),
        ("low", " in queue"),
        ("low", " in line"),
        ("low", "queue "),
        ("low", "position in"),
        ("low", "queued"),
    ),
    "countdown": (("low", " in 0"), ("low", " left "), ("low", " remaining "), ("low", " to go ")),
    "live_data": (
        *(
            ("low", a)
            for a in (
                "weather",
                "humidity",
                "trading at",
                "trades at",
                "traded at",
                "% today",
                "% on the",
            )
        ),
        *(("low", a) for a in ("temperature ", "temp ")),
        ("cls", "aaa/aaa 0"),
    ),
    "current_value": (("low", "current "), ("low", "your ")),
    "duration": tuple(
        ("low", a)
        for a in (
            *(" in 0", "took ", "lasted ", "latency", "load time", "response time"),
            *("render time", "round trip", "rtt", "ttfb", "ping", "age 0", "age:", "age="),
        )
    ),
    "day_ordinal": (*(("low", f"0{s} day") for s in ("th", "st", "nd", "rd")), ("low", "day 0")),
    "date_short": (("low", "0/0"), ("low", "00.00.00")),
    "relative_words": tuple(
        ("low", a)
        for a in (
            *(" ago", "earlier ", "this morning", "this afternoon", "this evening"),
            *("yesterday", "last night", "just now"),
        )
    ),
    "counter_since": (("low", "since "),),
    "counter_period": tuple(
        ("low", a)
        for a in (
            *("today", "tonight", "this hour", "this morning", "this afternoon", "this evening"),
            *("this week", "this month", "this session", "this conversation", "this chat"),
            *("streak", "tally", "karma"),
        )
    ),
    "process_id": tuple(
        ("low", a) for a in ("uid", "gid", "pid", "tid", "process id", "thread id", "0]")
    ),
    "live_quote": tuple(
        ("low", a)
        for a in (
            *("(+0", "(-0", "0?c", "0 ?c", "0?f", "0 ?f"),
            *("spot", "closing", "last trade", "0%", "0 %"),
        )
    ),
    "hex_groups": (("hex", "hhhh-hhhh-hhhh"),),
    "ab_bucket": tuple(("low", a) for a in ("bucket", "variant", "cohort", "experiment")),
    "token_label": tuple(
        ("low", a)
        for a in (
            "session",
            "sid",
            "nonce",
            "token",
            "csrf",
            "state",
            "cursor",
            "signature",
            "cookie",
            "bearer",
        )
    ),
}


def _positions(shape: str, anchor: str) -> list[int]:
    """Every start of `anchor` in `shape`, by C-speed searches (the twin of the compiled
    `anchors.find_all`, which finds every anchor of a shape in one pass)."""
    positions: list[int] = []
    find = shape.find
    at = find(anchor)
    while at != -1:
        positions.append(at)
        at = find(anchor, at + 1)
    return positions


def _gate(rule: str, low: str, position: int, anchor: str) -> bool:
    """A cheap look around an anchor before the rule's regex runs there."""
    if rule == "date_written":
        if anchor in ("/0000", ".0000"):
            return low[max(0, position - 6) : position].count(anchor[0]) == 1
        if anchor in ("0000.0", "0000/0"):
            return low[position + 6 : position + 9].count(anchor[4]) == 1
        # a month name starting a word, followed by a day number
        return (position == 0 or not low[position - 1].isalpha()) and "0" in low[
            position : position + 16
        ]
    if rule == "weekday" and anchor == "0/0":
        return _gate_weekday_date(low, position, anchor)
    if rule == "current_time_label":
        after = low[position : position + 24]
        return ":" in after or "=" in after
    if rule == "counter" and anchor == "#":
        return "0" in low[position + 1 : position + 3]
    if rule == "ab_bucket":
        after = low[position : position + 24]
        return ":" in after or "=" in after
    if rule == "current_value":
        after = low[position : position + 40]
        return (":" in after or "=" in after) and "0" in after
    if rule in _NEW_GATES:
        return _NEW_GATES[rule](low, position, anchor)
    if rule == "entity_id":  # a noun starting a word, a digit after it
        return (position == 0 or not low[position - 1].isalpha()) and "0" in low[
            position : position + 48
        ]
    if rule in ("build_id", "counter_today", "live_data", "token_label"):
        return "0" in low[position : position + 48]
    if rule in ("date_no_year", "counter_queue", "countdown"):
        return "0" in low[max(0, position - 24) : position + 24]
    if rule in ("counter_of", "counter_left"):
        return "0" in low[max(0, position - 16) : position]
    if rule.startswith("counter"):
        return "0" in low[position : position + 16]
    if rule == "time" and anchor == "0:00":
        # H:MM:SS always; a bare HH:MM only with a zone after it or a "now" before it
        after = low[position + 4 : position + 10]
        if after.startswith(":00"):
            return True
        before = low[max(0, position - 28) : position]
        if any(zone in after for zone in _ZONES) or any(w in before for w in _NOW_WORDS):
            return True
        later = low[position + 4 : position + 24]
        return any(w in later for w in _DAY_PARTS)
    if rule == "relative_time":
        return "0" in low[max(0, position - 12) : position]
    if rule == "random_number" and not anchor.startswith("0"):
        return "0000" in low[position : position + 28]
    return True


def _gate_duration(low: str, position: int, anchor: str) -> bool:
    if anchor in ("took ", "lasted "):
        return True
    if anchor != " in 0":  # a name: starting a word, a number after it
        return (position == 0 or not low[position - 1].isalpha()) and "0" in low[
            position : position + 20
        ]
    before = low[max(0, position - 5) : position]
    return before.endswith(("ed", "built", "ran", "run", "done", "made"))


def _gate_counter_since(low: str, position: int, anchor: str) -> bool:
    return "0" in low[max(0, position - 32) : position + 40]


def _gate_counter_period(low: str, position: int, anchor: str) -> bool:
    if anchor in ("streak", "tally", "karma"):
        return "0" in low[position : position + 20]
    return "0" in low[max(0, position - 40) : position]


def _gate_process_id(low: str, position: int, anchor: str) -> bool:
    if anchor == "0]":
        return "[" in low[max(0, position - 8) : position]
    return "0" in low[position + 3 : position + 16]


_LIVE_AFTER = ("tonight", "right now", "this ", "today", "on the ", "since ")


def _gate_live_quote(low: str, position: int, anchor: str) -> bool:
    if anchor in ("(+0", "(-0"):
        return "%" in low[position : position + 14]
    if anchor in ("0%", "0 %"):
        after = low[position : position + 40]
        return any(word in after for word in _LIVE_AFTER)
    if "?" in anchor:
        return True
    return "0" in low[position : position + 24]


def _gate_weekday_date(low: str, position: int, anchor: str) -> bool:
    before = low[max(0, position - 8) : position]
    return any(day in before for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))


def _always(low: str, position: int, anchor: str) -> bool:
    return True


# Gates of the rules added in probe round 5 (see _gate).
_NEW_GATES: dict[str, Callable[[str, int, str], bool]] = {
    "duration": _gate_duration,
    "day_ordinal": _always,
    "date_short": _always,
    "relative_words": _always,
    "counter_since": _gate_counter_since,
    "counter_period": _gate_counter_period,
    "process_id": _gate_process_id,
    "live_quote": _gate_live_quote,
    "hex_groups": _always,
}

_DAY_PARTS = (
    *("last night", "tonight", "today", "yesterday"),
    *("this morning", "this afternoon", "this evening"),
)
_ZONES = ("utc", "gmt", "st", "dt", "cet", "bst", "ist", "jst")
_NOW_WORDS = (
    "now",
    "currently",
    "time is",
    "it is",
    "it's",
    "as of",
    "local time",
    "time in",
    "time at",
    "clock ",
    *("started", "updated", "generated", "refreshed", "synced", "fetched", "created", "last seen"),
    *("yesterday", "today", "tonight"),
)


def _random_looking(token: str) -> bool:
    """At least four letter/digit alternations: `Zq8Lm3Np0Rx7`, not `x86_64` or `utf8_decoder`."""
    if token[:2] in ("0x", "0X"):  # a hex literal in code is a constant
        return False
    kinds = ["d" if c.isdigit() else "l" if c.isalpha() else "" for c in token]
    flips = sum(1 for a, b in pairwise(kinds) if a and b and a != b)
    return flips >= 4 and sum(c.isdigit() for c in token) >= 3


_PHONE_WORDS = re.compile(r"(?i:phone|\btel\b|call|fax|hotline|helpline|contact|sms|whatsapp|line)")
_NUMBER_LABEL = re.compile(r"(?i:\b(?:no|nos|num|number|ref|reference|id|code|is)\b|[#:])")
_PHONE_SHAPE = re.compile(r"(?:1[ -])?\(?\d{3}\)?[ -]\d{3}[ -]\d{4}")
_BARE_NOUN = re.compile(r"[A-Za-z]+ ")
_CARD_SHAPE = re.compile(r"\d{4}(?:[ -]\d{4}){2,3}")


def _entity_number(match: re.Match[str]) -> bool:
    """Digits in groups are an account or member number only with six digits or more, a label
    ("no.", "number:", "is") or four-digit groups, and nothing saying it is a phone number."""
    grouped = match.group("grouped")
    if grouped is None:
        return True
    head = match.string[match.start() : match.start("grouped")]
    if sum(c.isdigit() for c in grouped) < 6 or _PHONE_WORDS.search(head):
        return False
    if _PHONE_SHAPE.fullmatch(grouped):
        return False
    if len(set(re.split(r"[ -]", grouped))) == 1:  # "4242 4242 4242 4242", a test card
        return False
    if _NUMBER_LABEL.search(head) or _BARE_NOUN.fullmatch(head):  # "Ticket 4471-22"
        return True
    return _CARD_SHAPE.fullmatch(grouped) is not None


def _process_number(match: re.Match[str]) -> bool:
    """Not a fixed, configured id: system users (uid < 1000), the first user (1000), `nobody`
    (65534), low pids; a `name[1234]` tag only with a number that is not round (`buf[4096]`)."""
    tag = match.group("tag")
    if tag is not None:
        number = int(tag)
        return number % 10 != 0 and number & (number - 1) != 0
    number = int(match.group("id"))
    if match.group("kind").lower().endswith(("uid", "gid")):
        return number > 1000 and number != 65534
    return number >= 100


def _measured(match: re.Match[str]) -> bool:
    """A named measurement ("latency 23 ms") but not a round target or setting ("latency: 200
    ms", "ping 100 ms"): measured values have decimals or are not multiples of five."""
    measured = match.group("measured")
    return measured is None or "." in measured or int(measured) % 5 != 0


def _token_value(match: re.Match[str]) -> bool:
    """A labelled token of 12 characters or more; a shorter one only when it looks random."""
    value = match.group("value")
    return len(value) >= 12 or _random_looking(value)


# Rules whose regex finds candidates that a finer check then confirms.
_CONFIRM: dict[str, Callable[[re.Match[str]], bool]] = {
    "random_id": lambda match: _random_looking(match.group()),
    "entity_id": _entity_number,
    "token_label": _token_value,
    "process_id": _process_number,
    "duration": _measured,
}

_CLS = str.maketrans(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "0" * 10 + "a" * 52
)
_LOW = str.maketrans(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0" * 10 + "abcdefghijklmnopqrstuvwxyz"
)
_HEX = str.maketrans("0123456789abcdefABCDEF", "h" * 22)
_BEFORE, _AFTER = 40, 48
_LOOKAHEAD = 16  # how far past a match the rules' lookaheads read

# Several patterns can report under one public rule id; each has its own anchors.
_PUBLIC_RULE = {
    "date_written": "date",
    "date_week": "date",
    "counter_ordinal": "counter",
    "counter_so_far": "counter",
    "counter_of": "counter",
    "counter_quota": "counter",
    "counter_left": "counter",
    "elapsed": "relative_time",
    "countdown": "relative_time",
    "date_no_year": "date",
    "counter_today": "counter",
    "counter_has": "counter",
    "counter_queue": "counter",
    "request_id_label": "request_id",
    "duration": "relative_time",
    "day_ordinal": "date",
    "date_short": "date",
    "relative_words": "relative_time",
    "counter_since": "counter",
    "counter_period": "counter",
    "live_quote": "live_data",
    "hex_groups": "request_id",
}

_COMPILED = [
    (rule, severity, re.compile(pattern), fix) for rule, severity, pattern, fix in _TEXT_RULES
]


def _anchors_by_shape() -> dict[str, tuple[str, ...]]:
    """Each shape's distinct anchors, in first-use order (what one `find_all` call searches)."""
    by_shape: dict[str, dict[str, None]] = {}
    for pairs in _ANCHORS.values():
        for shape_name, anchor in pairs:
            by_shape.setdefault(shape_name, {})[anchor] = None
    return {name: tuple(anchors) for name, anchors in by_shape.items()}


_SHAPE_ANCHORS = _anchors_by_shape()
_SHAPE_TABLES = {"low": _LOW, "hex": _HEX, "cls": _CLS}


def _anchor_positions(shapes: dict[str, str]) -> dict[tuple[str, str], list[int]]:
    """Every anchor's positions in its shape: one pass per shape when `anchors` is compiled."""
    native: Any = None
    found: dict[tuple[str, str], list[int]] = {}
    for shape_name, anchors in _SHAPE_ANCHORS.items():
        shape = shapes[shape_name]
        # hex's two anchors are long runs of `h`, which str.find skips through faster
        if native is not None and shape_name != "hex":
            for anchor, positions in zip(anchors, native.find_all(shape, anchors)):
                found[shape_name, anchor] = positions
        else:
            for anchor in anchors:
                found[shape_name, anchor] = _positions(shape, anchor)
    return found


def _scan_text(text: str, layer: str | None, path: str, out: list[Finding]) -> None:
    """Run the text rules over one block, only in windows around their anchors."""
    if not text:
        return
    # Shapes are built on a one-byte copy (non-ASCII characters become "?", one for one, so
    # positions stay the same): str.translate is fast only on ASCII strings.
    ascii_text = text if text.isascii() else text.encode("ascii", "replace").decode("ascii")
    shapes = {name: ascii_text.translate(table) for name, table in _SHAPE_TABLES.items()}
    found_at = _anchor_positions(shapes)  # anchors shared by rules are searched once
    taken: set[int] = set()
    found: list[tuple[int, int, str, str, str]] = []
    size = len(text)
    for rule, severity, pattern, fix in _COMPILED:
        confirm = _CONFIRM.get(rule)
        for shape_name, anchor in _ANCHORS[rule]:
            covered = -1
            for position in found_at[shape_name, anchor]:
                if position >= covered and _gate(rule, shapes["low"], position, anchor):
                    lo = max(0, position - _BEFORE)
                    hi = min(size, position + len(anchor) + _AFTER)
                    for match in pattern.finditer(text, lo, hi):
                        start, end = match.span()
                        if end > hi - _LOOKAHEAD and hi < size:
                            # near the window's end, which a lookahead or `\b` takes for the
                            # end of the text: read this match again with what follows
                            again = pattern.match(text, start, min(size, hi + _AFTER))
                            if again is None:
                                continue
                            match, end = again, again.end()
                        covered = max(covered, end)
                        if start == end or start in taken or (end - 1) in taken:
                            continue
                        if confirm is not None and not confirm(match):
                            continue
                        taken.update(range(start, end))
                        found.append((start, end, rule, severity, fix))
    if not found:
        return
    found.sort()
    line, counted_to = 1, 0
    for start, end, rule, severity, fix in found:
        line += text.count("\n", counted_to, start)
        counted_to = start
        line_start = text.rfind("\n", 0, start) + 1
        out.append(
            Finding(
                rule=_PUBLIC_RULE.get(rule, rule),
                severity=severity,
                layer=layer,
                line=line,
                column=start - line_start + 1,
                end_column=end - line_start + 1,
                text=text[start:end][:80],
                fix=fix,
                path=path,
            )
        )


# --------------------------------------------------------------------------------------------
# structural rules


def _finding(
    rule: str, severity: str, layer: str | None, path: str, text: str, fix: str
) -> Finding:
    return Finding(rule, severity, layer, 0, 0, 0, text, fix, path)


def _layer_name(side: _Side, i: int) -> str | None:
    return side.layers[i] or side.paths[i]


def _structure(side: _Side, model: str, points: list[tuple[int, str]], out: list[Finding]) -> None:
    # 1h after 5m (spec §1.6)
    seen_5m: int | None = None
    for index, ttl in points:
        if ttl == "5m" and seen_5m is None:
            seen_5m = index
        elif ttl == "1h" and seen_5m is not None:
            out.append(
                _finding(
                    "ttl_order",
                    ERROR,
                    _layer_name(side, index),
                    side.paths[index],
                    f"1h breakpoint after the 5m one at {side.paths[seen_5m]}",
                    "Give the earlier layer ttl='1h' or this one ttl='5m': the API rejects a 1h "
                    "breakpoint after a 5m one.",
                )
            )
    # more than 20 positions between breakpoints (spec §1.5)
    previous = -1
    for index, _ in points:
        if previous >= 0 and index - previous > LOOKBACK:
            out.append(
                _finding(
                    "lookback",
                    WARNING,
                    _layer_name(side, index),
                    side.paths[index],
                    f"{index - previous} blocks since the breakpoint at {side.paths[previous]}",
                    "Add a breakpoint in between: the cache looks back only 20 blocks from each "
                    "breakpoint.",
                )
            )
        previous = index
    # the first cached prefix below the model's minimum (spec §1.7)
    _, minimum = _model_facts(model)
    if minimum is None or not points:
        return
    cumulative, done = 0, -1
    for index, _ in points:
        for i in range(done + 1, index + 1):
            cumulative += side.tokens(i)
        done = index
        if cumulative >= minimum:
            return
        out.append(
            _finding(
                "below_minimum",
                WARNING,
                _layer_name(side, index),
                side.paths[index],
                f"{cumulative:,} tokens up to here; {model} caches from {minimum:,}",
                "Grow the cached prefix past the minimum or drop this breakpoint: below it "
                "nothing is cached.",
            )
        )


def _tool_names(side: _Side) -> list[str]:
    names: list[str] = []
    assert side.texts is not None
    for i, level in enumerate(side.levels):
        if level != "tools":
            continue
        try:
            tool = orjson.loads(side.texts[i])
        except orjson.JSONDecodeError:
            continue
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            names.append(tool["name"])
    return names


def _json_value(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _against_previous(side: _Side, old: _Side, scope: int, out: list[Finding]) -> None:
    assert side.texts is not None
    assert old.texts is not None
    new_tools, old_tools = _tool_names(side), _tool_names(old)
    if new_tools != old_tools and sorted(new_tools) == sorted(old_tools):
        out.append(
            _finding(
                "tool_order",
                ERROR,
                "tools",
                "tools",
                ", ".join(new_tools)[:80],
                "Keep the tools in one fixed order (e.g. sorted by name): a new order breaks the "
                "whole cache.",
            )
        )
    marks = {index for index, _ in side.breakpoints()}
    for i in range(min(scope + 1, len(side), len(old))):
        new, prev = side.texts[i], old.texts[i]
        if new is prev or new == prev or side.levels[i] != old.levels[i]:
            continue
        value = _json_value(new)
        if value is not None and value == _json_value(prev):
            out.append(
                _finding(
                    "json_key_order",
                    ERROR,
                    _layer_name(side, i),
                    side.paths[i],
                    new[:80],
                    "Serialize this JSON with a fixed key order (e.g. sort_keys=True): the same "
                    "object in another order is a different prefix.",
                )
            )
        elif i in marks:
            out.append(
                _finding(
                    "changing_breakpoint",
                    WARNING,
                    _layer_name(side, i),
                    side.paths[i],
                    new[:80],
                    "Put the breakpoint on the last block that stays the same: a breakpoint on a "
                    "changing block writes on every call and never reads.",
                )
            )


# --------------------------------------------------------------------------------------------


def _strings(value: Any, path: str, depth: int) -> Iterable[tuple[str, str]]:
    if depth > 20:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}.{i}", depth + 1)


def _params_of(value: Any) -> tuple[Mapping[str, Any] | None, Any]:
    """(params, prompt or None) for a Prompt, params dict, or anything else (None, None)."""
    render = getattr(value, "render", None)
    if callable(render) and hasattr(value, "layers"):
        try:
            return render(user="."), value
        except Exception:  # a Prompt that cannot render: lint what its layers say
            return None, value
    if isinstance(value, Mapping):
        return value, None
    return None, None


def lint(
    prompt_or_params: Any,
    *,
    previous: Any = None,
    model: str | None = None,
) -> Findings:
    """Likely cache-busters and layout mistakes in the cached part of a prompt.

    Parameters
    ----------
    prompt_or_params:
        A `cachescope.Prompt`, request params (`messages.create` kwargs), or a plain string (read
        as a cached system prompt).
    previous:
        The previous render of the same prompt (params or Prompt). With it, `lint` also reports
        JSON whose key order changed, re-ordered tools and breakpoints on blocks that changed.
    model:
        Model ID for the minimum-length check; by default the request's model.

    Text is scanned where it is re-sent on every call: tools and system, up to the last
    breakpoint. The conversation is append-only, so a date in an earlier turn is not a buster;
    with `previous`, an edited turn is reported as `prefix_changed`. Structural checks (minimum
    length, lookback, TTL order, dynamic placement) cover the whole request. Returns a `Findings`
    list, empty when all is well.
    """
    out = Findings()
    try:
        _lint_into(prompt_or_params, previous, model, out)
    except RecursionError:  # absurdly nested input: report what was found so far
        pass
    return out


def _lint_into(value: Any, previous: Any, model: str | None, out: list[Finding]) -> None:
    if isinstance(value, str):
        value = {"model": model or "", "system": [{"type": "text", "text": value}]}
    params, prompt = _params_of(value)
    if params is None:
        if prompt is not None:
            for layer in getattr(prompt, "layers", ()):
                text = getattr(layer, "text", "")
                if isinstance(text, str) and getattr(layer, "ttl", None):
                    _scan_text(text, getattr(layer, "name", None), "system", out)
        return
    try:
        side = _Side.from_params(params)
        side.texts = list(side.texts or ())  # serialize every block here, where errors are caught
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        # not a request the API would accept: still look at whatever text it holds
        for path, text in _strings(params, "request", 0):
            _scan_text(text, None, path, out)
        return
    assert side.texts is not None
    model = model or side.model
    points = side.breakpoints()
    if points:
        scope = points[-1][0]
    else:
        scope = max((i for i, level in enumerate(side.levels) if level != "messages"), default=-1)
    for i in range(scope + 1):
        layer = side.layers[i]
        # The conversation is append-only: a date in an earlier turn (or the newest one, where
        # the dynamic layer belongs) is sent once and read back unchanged, so it busts nothing.
        # Edited history is caught against `previous` (prefix_changed).
        if layer == "dynamic" or side.levels[i] == "messages":
            continue
        _scan_text(side.texts[i], layer or side.paths[i], side.paths[i], out)
    _structure(side, model, points, out)
    if prompt is not None and getattr(prompt, "dynamic_placement", "user") == "system":
        try:
            dynamic = prompt.layer("dynamic")
        except KeyError:
            dynamic = None
        resolve = getattr(prompt, "resolved_history_ttl", None)
        history = resolve() if callable(resolve) else None
        if dynamic is not None and str(getattr(dynamic, "text", None) or "") and history:
            out.append(
                _finding(
                    "dynamic_in_system",
                    ERROR,
                    "dynamic",
                    "system",
                    "dynamic layer in the system prompt, ahead of the cached history",
                    'Use Prompt(dynamic_placement="user"): in the system prompt the dynamic layer '
                    "changes the prefix of the whole conversation on every call.",
                )
            )
    if previous is not None:
        old_params, _ = _params_of(previous)
        if old_params is not None:
            try:
                old = _Side.from_params(old_params)
                old.texts = list(old.texts or ())
            except (TypeError, ValueError, AttributeError, KeyError, IndexError):
                return
            _against_previous(side, old, scope, out)
            try:
                diff = compare(old_params, params)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError):
                return
            if diff.broken and diff.index is not None and diff.cause not in ("expired",):
                known = {(f.path, f.rule) for f in out}
                if (diff.path, "json_key_order") not in known and diff.setting is None:
                    changed = _prefix_changed(diff)
                    # a pattern that already flags the changed value says it better
                    if not any(
                        f.path == changed.path
                        and f.line == changed.line
                        and f.column < changed.end_column
                        and f.end_column > changed.column
                        for f in out
                    ):
                        out.append(changed)


def _changed_token(window: str | None, span: tuple[int, int] | None) -> tuple[str, int]:
    """The run of non-blank characters around a diff window's changed span (what a reader
    calls the value that changed: `88-2231-8`, `09:13:25`), and how far it starts before the
    span; ("", 0) without a window."""
    if not window or span is None:
        return "", 0
    start, end = span
    while start > 0 and not window[start - 1].isspace() and window[start - 1] != "…":
        start -= 1
    while end < len(window) and not window[end].isspace() and window[end] != "…":
        end += 1
    return window[start:end], span[0] - start


def _prefix_changed(diff: Any) -> Finding:
    """The finding for a cached block that differs from the previous render, pointing at the
    value that changed and saying what it was."""
    token, before = _changed_token(diff.new_window, diff.new_span)
    old_token, _ = _changed_token(diff.old_window, diff.old_span)
    column = max(1, (diff.column or 1) - before) if diff.line else 0
    was = f" (was {old_token[:40]!r})" if old_token and old_token != token else ""
    return Finding(
        "prefix_changed",
        WARNING,
        diff.layer or diff.path,
        diff.line or 0,
        column,
        column + max(1, len(token)) if diff.line else 0,
        (token or diff.new_window or "")[:80],
        f"This differs from the previous render{was}: move what changes to the dynamic layer "
        "(after the last breakpoint), or keep the cached layers byte-for-byte identical.",
        diff.path or "",
    )
