"""Every lint rule, one object each, in the order they are tried (an earlier text rule wins where
two match the same characters).

Cached text is everything up to and including the last breakpoint (spec §1.1, §2): it is read
from cache only when it is byte-for-byte the same on every call. The text rules look there for
what is likely to change between calls: dates and times, weekday phrases, unix epochs, UUIDs,
request and trace IDs, random-looking numbers, counters, "current time" labels, measured
durations, user/process/account numbers, live prices and weather. The request rules check the
layout; the change rules compare with the previous render.

To add a rule, add one object to its list below (`TextRule`, `RequestRule` or `ChangeRule`, in
`_kinds.py`). A text rule names the anchors its matches lie near; lint derives its search from them.
A request or change rule's check reads `_layout.Request`: the params, the blocks of
`cachescope.blocks.flatten` (`Block`: index, level, path, kind, role, tokens, text, cache_control,
ttl, layer), the model, the breakpoints (explicit and automatic) and the cached scope.
"""

from __future__ import annotations

from cachescope.lint import _gates as g
from cachescope.lint import _layout
from cachescope.lint._kinds import (
    ERROR,
    WARNING,
    ChangeRule,
    RequestRule,
    TextRule,
    classes,
    hexes,
    low,
)

__all__ = ["CHANGE_RULES", "REQUEST_RULES", "RULES", "TEXT_RULES"]

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DAYS = r"(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?"
_MOVE = "move it to the dynamic layer (after the last breakpoint)"
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ORDINALS = ("0th", "0st", "0nd", "0rd")
_LIVE_AFTER = ("tonight", "right now", "this ", "today", "on the ", "since ")

# One rule per entry: TextRule(id, severity, pattern, fix, anchors=..., [name=, confirm=]).
# fmt: off
TEXT_RULES: tuple[TextRule, ...] = (
    TextRule("timestamp", ERROR,
        r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2}| ?UTC)?",
        f"A timestamp changes on every call: {_MOVE}.",
        anchors=low("0000-00-00"),
    ),
    TextRule("date", WARNING,
        r"\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b",
        f"A date in the cached prefix changes daily: {_MOVE}.",
        anchors=low("0000-00-00"),
    ),
    TextRule("date", WARNING,
        rf"\b(?:{_DAYS},? )?{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?,? (?:19|20)\d{{2}}\b"
        rf"|\b\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS},? (?:19|20)\d{{2}}\b"
        r"|\b\d{1,2}/\d{1,2}/(?:19|20)\d{2}\b"
        r"|\b\d{1,2}\.\d{1,2}\.(?:19|20)\d{2}\b"
        rf"|\b\d{{1,2}}-{_MONTHS}-(?:(?:19|20)?\d{{2}})\b"
        r"|\b(?:19|20)\d{2}[./](?:0?[1-9]|1[0-2])[./](?:0?[1-9]|[12]\d|3[01])\b",
        f"A written date in the cached prefix changes daily: {_MOVE}.",
        name="date_written",
        anchors=(
            *low("/0000", gate=g.one_before("/", 6)),
            *low(".0000", gate=g.one_before(".", 6)),
            *low("0000.0", gate=g.one_after(".", 6, 9)),
            *low("0000/0", gate=g.one_after("/", 6, 9)),
            # a month name starting a word, followed by a day number
            *low(*_MONTH_NAMES, gate=g.word_start_then_digit(16)),
        ),
    ),
    TextRule("time", ERROR,
        r"\b(?:[01]?\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?\b(?: ?(?:[AaPp]\.?[Mm]\.?|UTC|GMT|[A-Z]{3,4}\b))?"
        r"|\b(?:1[0-2]|0?[1-9])(?::[0-5]\d)? ?[AaPp]\.?[Mm]\.?(?![A-Za-z0-9])"
        r"|\b(?:[01]?\d|2[0-3]):[0-5]\d ?(?:UTC|GMT|[ECMP][SD]T|CET|CEST|BST|IST|JST)\b"
        # a clock said of now, read out for a place ("Local time in Perth: 08:02", "server clock
        # reads 09:14") or when something just happened ("started 22:10", "yesterday at 17:45");
        # the finding shows the whole clock ("Generated at 14:23:47 UTC" shows "14:23:47 UTC")
        r"|(?:(?i:\b(?:right now|now|currently|time is|it is|it's|as of)\b[^\n.\d]{0,16}?)"
        r"|(?i:\b(?:local time|time in|time at|clock (?:reads|shows|says))\b[^\n.\d]{0,24}?)"
        r"|(?i:\b(?:started|updated|generated|refreshed|synced|fetched|created|last seen|yesterday"
        r"|today|tonight)(?: at| on)? ))"
        r"(?P<value>\b(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?\b"
        r"(?: ?(?:[AaPp]\.?[Mm]\.?(?![A-Za-z0-9])|UTC|GMT|[A-Z]{3,4}\b))?)"
        # ... or before it: "at 03:00 last night", "sent at 08:30 today"
        r"|\b(?:[01]?\d|2[0-3]):[0-5]\d(?= (?i:last night|tonight|today|yesterday"
        r"|this (?:morning|afternoon|evening))\b)",
        f"A clock time changes on every call: {_MOVE}.",
        anchors=(
            *low("0:00", gate=g.clock_gate),
            *low(*(f"0{gap}{half}" for gap in ("", " ") for half in ("am", "pm", "a.m", "p.m"))),
        ),
    ),
    TextRule("weekday", ERROR,
        rf"(?i:\b(?:today|tonight|it|now)(?:'s| is)(?: a)? {_DAYS}\b)|\b{_DAYS},? (?:the )?\d{{1,2}}(?:st|nd|rd|th)\b"
        rf"|(?i:\bhappy {_DAYS}\b)"
        rf"|\b{_DAYS} (?:morning|afternoon|evening|night)\b"  # "mornings" is a habit, not a day
        rf"|\b{_DAYS},? \(?\d{{1,2}}[/.]\d{{1,2}}\b"
        rf"|\b{_DAYS},? {_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?\b",
        f"A weekday phrase changes daily: {_MOVE}.",
        anchors=(
            *low(
                *(f"{day}day" for day in ("mon", "tues", "wednes", "thurs", "fri", "satur", "sun"))
            ),
            *low(*_ORDINALS),
            *low("0/0", gate=g.word_before(8, _DAY_NAMES)),  # "Thu 4/12"
        ),
    ),
    TextRule("current_time_label", ERROR,
        r"(?i:\b(?:current|today'?s|local|server|request|now)[ _-]?(?:date|time|datetime|timestamp|day)"
        # `localtime=False` is a keyword argument, not a value
        r"(?: is)?[ \t]*[:=][ \t]*(?!(?:False|True|None|null|true|false)\b)[^\s=:]\S*)",
        "A 'current time' value is different on every call: move the whole line to the dynamic layer.",
        anchors=low("date", "time", "day", gate=g.label_after(24)),
    ),
    TextRule("epoch", WARNING,
        # seconds, milliseconds, or seconds with a fraction ("thread_ts: 1772113259.294229")
        r"(?<![\w.\-/])1[7-9]\d{8}(?:\d{3}|\.\d{1,9})?(?![\w\-/]|\.\w)",
        f"This looks like a unix epoch time, which changes on every call: {_MOVE}.",
        anchors=low("0000000000"),
    ),
    TextRule("uuid", ERROR,
        r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
        f"A UUID is usually unique per request or session: {_MOVE}.",
        anchors=hexes("hhhhhhhh-hhhh-hhhh"),
    ),
    TextRule("request_id", ERROR,
        # a generated suffix has a digit or a capital; `run_pipeline` and `call_count` are code
        r"\b(?:req|msg|toolu|trace|span|run|sess|evt|chatcmpl|call|conv|thread|chat|job|task|batch"
        r"|cart|order|cus|sub|inv)"
        r"_(?=[A-Za-z]*\d|[a-z\d]*[A-Z])[A-Za-z0-9]{8,}\b",
        f"A request or trace ID is new on every call: {_MOVE}.",
        anchors=low(
            *("conv_", "thread_", "chat_", "job_", "task_", "batch_", "req_", "msg_", "toolu_"),
            *("trace_", "span_", "run_", "sess_", "evt_", "chatcmpl", "call_", "cart_", "order_"),
            *("cus_", "sub_", "inv_"),
        ),
    ),
    TextRule("request_id", ERROR,
        r"(?i:\b(?:request|trace|span|correlation|session|run|operation|job|task|event|instance|device|client)"
        r"[ _-]?id\s*[:=]\s*[\"']?)[A-Za-z0-9][A-Za-z0-9_\-]{7,}",
        f"A request or trace ID is new on every call: {_MOVE}.",
        name="request_id_label",
        anchors=low("id:", "id=", "id =", "id :"),
    ),
    TextRule("hex_id", WARNING,
        r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{16,}\b",
        f"A long hex string looks like a per-call ID or nonce: {_MOVE}.",
        anchors=hexes("hhhhhhhhhhhhhhhh"),
    ),
    TextRule("random_number", WARNING,
        r"(?<![\w.])0\.\d{7,}\b"
        r"|(?i:\b(?:seed|nonce|random|rand|salt|token|otp)\w*\s*[:=]\s*)\d{4,}\b"
        r"|(?i:\b(?:seed|nonce|salt)\s+)\d{6,}\b",
        f"A random-looking number will differ between calls: {_MOVE}.",
        anchors=(
            *low("0.0000000"),
            *low("seed", "nonce", "rand", "salt", "token", "otp", gate=g.word_after(28, ("0000",))),
        ),
    ),
    # Counters: one pattern per phrasing, each searched only around its own anchors.
    TextRule("counter", WARNING,
        r"(?i:\b(?:request|call|turn|message|attempt|iteration|retry|visit(?:or)?|session|conversation)"
        r"\s*(?:#|no\.|number|count)\s*:?\s*\d+\b)",
        f"A counter goes up on every call: {_MOVE}.",
        anchors=(
            *low("#", gate=g.digit_after(3, skip=1)),
            *low("no.", "number", "count", gate=g.digit_after(16)),
        ),
    ),
    TextRule("counter", WARNING,
        r"(?i:\b(?:this is (?:your|the) )(?:\d+(?:st|nd|rd|th)) (?:request|call|visit|message|turn|attempt)\b)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_ordinal",
        anchors=low("this is ", gate=g.digit_after(16)),
    ),
    TextRule("counter", WARNING,
        r"(?i:\b(?:calls?|requests?|messages?|turns?|visits?|attempts?|tokens?|queries|searches|steps?)"
        r"(?: used)? (?:so far|made|sent|remaining)\s*[:=]\s*\d[\d,]*)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_so_far",
        anchors=low("so far", " made", " sent", "remaining", gate=g.digit_after(16)),
    ),
    TextRule("counter", WARNING,
        r"(?i:\b\d[\d,]* (?:more )?(?:calls?|requests?|messages?|turns?|visits?|attempts?|tokens|credits?"
        r"|queries|searches|steps?) (?:remaining|left)\b)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_left",
        anchors=low(" remaining", " left", gate=g.digit_before(16)),
    ),
    TextRule("counter", WARNING,
        r"(?i:\b(?:turn|message|request|call|step|iteration|exchange|reply|post|comment|question"
        r"|answer|round|prompt) \d+ (?:of|in) (?:the|this) "
        r"(?:conversation|session|chat|thread)\b)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_of",
        anchors=low("conversation", "session", "chat", "thread", gate=g.digit_before(16)),
    ),
    TextRule("counter", WARNING,
        r"(?i:\b(?:remaining|quota|balance|credits?|budget)"
        r"(?: (?:quota|tokens|credits|budget|left|remaining|available|used))?"
        r"\s*[:=]\s*\$?\d[\d,.]*)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_quota",
        anchors=low("remaining", "quota", "balance", "credit", "budget", gate=g.digit_after(16)),
    ),
    TextRule("random_id", WARNING,
        r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{12,}(?![A-Za-z0-9_\-])",
        f"A random-looking identifier is usually new per call or per session: {_MOVE}.",
        anchors=classes("a0a", "0a0"),
        confirm=lambda match: g.random_looking(match.group()),
    ),
    TextRule("relative_time", WARNING,
        r"(?i:\b\d+ (?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?) ago\b)",
        f"A relative time ('3 minutes ago') is stale on the next call: {_MOVE}.",
        anchors=low(" ago", gate=g.digit_before(12)),
    ),
    TextRule("relative_time", WARNING,
        r"(?i:\b(?:uptime|elapsed(?: time)?|running for|up for|online for)\s*[:=]?\s*"
        r"\d+(?:\.\d+)?\s*(?:ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)\b)",
        f"An elapsed time or uptime grows between calls: {_MOVE}.",
        name="elapsed",
        anchors=low("uptime", "elapsed", "running for", "up for", "online for"),
    ),
    TextRule("date", WARNING,
        r"(?i:\bweek \d{1,2},? (?:of )?(?:19|20)\d{2}\b)|\b(?:19|20)\d{2}-W(?:0[1-9]|[1-4]\d|5[0-3])\b"
        r"|(?i:\bweek \d{1,2},? day \d{1,3}\b)",
        f"A week of the year in the cached prefix changes weekly: {_MOVE}.",
        name="date_week",
        anchors=low("week 0", "0000-w0"),
    ),
    TextRule("entity_id", WARNING,
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
        anchors=low(
            *("user", "customer", "member", "caller", "account", "client", "ticket", "order"),
            *("case", "incident", "booking", "reservation", "invoice", "transaction", "cart"),
            *("guest", "player", "patient", "subscriber", "tenant"),
            *("claim", "polic", "card", "ref", "shipment", "parcel", "tracking"),
            *("employee", "staff", "agent", "student", "applicant", "badge"),
            gate=g.word_start_then_digit(48),
        ),
        confirm=g.entity_number,
    ),
    TextRule("build_id", WARNING,
        # also stamps such as "+build.20261204", "nightly.1204", "pipeline #5571"
        r"(?i:\b(?:build|commit|revision|rev|changeset|git sha|nightly|snapshot|pipeline)\b"
        r"\s*[:#=.]?\s*#?)"
        r"(?:(?:[A-Za-z]+[-_])?\d{3,}\b|(?=[a-f]*\d)(?=\d*[a-f])[0-9a-f]{7,40}\b)",
        f"A build number or commit changes with every deploy: {_MOVE}.",
        anchors=low(
            *("build", "commit", "revision", "rev", "changeset", "git sha"),
            *("nightly", "snapshot", "pipeline"),
            gate=g.digit_after(48),
        ),
    ),
    TextRule("date", WARNING,
        rf"\b{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)\b|\b\d{{1,2}}(?:st|nd|rd|th) (?:of )?{_MONTHS}\b"
        rf"|(?i:\b(?:today|tonight|now|as of|dated?)\b[^\n.\d]{{0,16}}?)(?-i:{_MONTHS}\.? \d{{1,2}}\b)"
        # "Statement date: 4 Dec", "04 Dec" (padded by a template; "closes on 25 December" is not)
        r"|(?:\b0[1-9]|(?i:\b(?:date|dated|as of|as at)\s*[:=]?\s*)(?:0?[1-9]|[12]\d|3[01]))"
        rf" {_MONTHS}\b(?![.,]?\s*[-\d])",
        f"A date in the cached prefix changes daily: {_MOVE}.",
        name="date_no_year",
        anchors=low(*_MONTH_NAMES, *_ORDINALS, gate=g.digit_around(24, 24)),
    ),
    TextRule("counter", WARNING,
        # "Today's lucky number: 7731", "Requests handled today: 30007", "Queue length right now: 24"
        r"(?i:\b(?:today|tonight|this week|this month)'?s(?: [a-z-]+){1,3}\s*(?:is|was|[:=])"
        r"[^\n\d]{0,24}?[$#]?\d(?:[\d,.]*\d)?"
        r"|\b(?:today|this (?:hour|minute|week|month|session)|right now|so far|at the moment"
        r"|in the (?:last|past) (?:minute|hour|day|week|24 hours))"
        r"\s*[:=]\s*\d[\d,]*)",
        f"A count or value of the day changes between calls: {_MOVE}.",
        name="counter_today",
        anchors=low(
            *("today", "this hour", "this minute", "this week", "this month", "this session"),
            *("right now", "so far", "at the moment", "the last ", "the past "),
            gate=g.digit_after(48),
        ),
    ),
    TextRule("counter", WARNING,
        r"(?i:\b(?:this|the) (?:chat|conversation|thread|session) (?:now )?(?:has|contains|is at) "
        r"\d[\d,]* (?:messages|turns|exchanges|replies|tokens)\b)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_has",
        anchors=low("chat ", "conversation ", "thread ", "session ", gate=g.digit_after(16)),
    ),
    TextRule("counter", WARNING,
        r"(?i:\b(?:caller|customer|person|visitor|user|number|position)\s*#?\d+ in (?:the )?"
        r"(?:queue|line)\b|\bqueue (?:position|length|size|depth)\b[^\n\d]{0,16}?\d+"
        r"|\bposition in (?:the )?(?:queue|line)\b[^\n\d]{0,8}?\d+"
        r"|\bqueued\b[^\n\d]{0,16}?(?:position|number|place|#)\s*#?\d+)",
        f"A queue position changes on every call: {_MOVE}.",
        name="counter_queue",
        anchors=low(
            *(" in the queue", " in queue", " in line", "queue ", "position in", "queued"),
            gate=g.digit_around(24, 32),  # "queue position" and 16 more before the number
        ),
    ),
    TextRule("relative_time", WARNING,
        r"(?i:\b(?:expires?|ends?|closes?|starts?|begins?|resets?|renews?|due|launch(?:es)?)\s+in\s+"
        r"\d+\s*(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|[smhd])\b"
        r"(?:,?\s*(?:and\s+)?\d+\s*(?:seconds?|secs?|minutes?|mins?|[smh])\b)?"
        r"|\b\d+\s*(?:seconds?|minutes?|hours?|days?|weeks?) (?:left|remaining|to go) "
        r"(?:until|till|before|to)\b)",
        f"A countdown is stale on the next call: {_MOVE}.",
        name="countdown",
        anchors=low(" in 0", " left ", " remaining ", " to go ", gate=g.digit_around(24, 24)),
    ),
    TextRule("live_data", WARNING,
        r"(?i:\bweather\b[^\n]{0,40}?-?\d{1,3} ?°[CF]?|\bhumidity\s*[:=]?\s*\d{1,3} ?%"
        r"|\b(?:trading|trades|traded) at \$?\d[\d,]*(?:\.\d+)?|[+-]\d+(?:\.\d+)?% (?:today|on the day)\b"
        r"|\b(?:temperature|temp) (?:outside|now|currently|right now|today)\b[^\n\d]{0,8}?-?\d{1,3} ?°)"
        # a currency pair's rate: "EUR/USD 1.0842"
        r"|\b[A-Z]{3}/[A-Z]{3}\s*[:=]?\s*(?:\d+\.\d{2,}|\d{1,3}(?:,\d{3})+(?:\.\d+)?)",
        "Live data (weather, prices) is different on every call: fetch it into the dynamic layer "
        "(after the last breakpoint).",
        anchors=(
            *low(
                *("weather", "humidity", "trading at", "trades at", "traded at", "% today"),
                *("% on the", "temperature ", "temp "),
                gate=g.digit_after(48),
            ),
            *classes("aaa/aaa 0", gate=g.digit_after(48)),
        ),
    ),
    TextRule("ab_bucket", WARNING,
        r"(?i:\b(?:bucket|variant|cohort|experiment)\s*[:=]\s*)[A-Za-z][A-Za-z0-9]*(?:[_\-][A-Za-z0-9]+)*"
        r"[_\-][A-Za-z0-9]{4,}\b",
        f"An experiment bucket is assigned per user or session: {_MOVE}.",
        anchors=low("bucket", "variant", "cohort", "experiment", gate=g.label_after(24)),
    ),
    TextRule("token_label", ERROR,
        r"(?i:\b(?:session|sid|nonce|token|csrf|state|cursor|signature|cookie|bearer)\b(?:\s?[:=]\s*|\s)[\"']?(?!0[xX]))"
        r"(?P<token>(?=[A-Za-z_\-+/]*\d)[A-Za-z0-9_\-+/]{8,})={0,2}",
        f"A session token or nonce is new per session or call: {_MOVE}.",
        anchors=low(
            *("session", "sid", "nonce", "token", "csrf", "state", "cursor", "signature"),
            *("cookie", "bearer"),
            gate=g.digit_after(48),
        ),
        confirm=g.token_value,
    ),
    TextRule("current_value", WARNING,
        # "Current moon phase: waxing gibbous (61%)", "Your loyalty points: 1,482"
        r"(?i:\b(?:current|your) (?:[a-z]+ ){0,2}[a-z]+\s*[:=]\s*)[^\n\d]{0,24}?[$#]?\d[\d,.]*%?",
        f"A current or per-user value changes between calls: {_MOVE}.",
        anchors=low("current ", "your ", gate=g.label_after(40, digit=True)),
    ),
    TextRule("relative_time", WARNING,
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
        name="duration",
        anchors=(
            *low(
                " in 0", gate=g.ends_with_before(5, ("ed", "built", "ran", "run", "done", "made"))
            ),
            *low("took ", "lasted "),
            # a name: starting a word, a number after it
            *low(
                *("latency", "load time", "response time", "render time", "round trip", "rtt"),
                *("ttfb", "ping", "age 0", "age:", "age="),
                gate=g.word_start_then_digit(20),
            ),
        ),
        confirm=g.measured,
    ),
    TextRule("date", WARNING,
        # "the 338th day of the year"; said of now: "Today is day 12 of the free trial",
        # "We are on the 4th day of the sprint", "Advent calendar: day 4 of 24" (an itinerary's
        # "Day 1 of 3" or "on the 1st day of the month" is a plan, not a date)
        r"(?i:\b(?:\d{1,3}(?:st|nd|rd|th) day|day \d{1,3}) of (?:the |this )?year\b"
        r"|(?:\b(?:today is|it is|it's|we are (?:on|in)|you are (?:on|in)|currently|now|this is)"
        r"|:) (?:the )?(?:\d{1,3}(?:st|nd|rd|th) day|day \d{1,3}) of (?!(?:each|every|a)\b)"
        r"(?:\d{1,3}\b|(?:the |this |your |our )?(?:[a-z-]+ ){0,2}?[a-z]+))",
        f"The day of a year, trial or sprint changes daily: {_MOVE}.",
        name="day_ordinal",
        anchors=low("0th day", "0st day", "0nd day", "0rd day", "day 0"),
    ),
    TextRule("date", WARNING,
        # a numeric date with a two-digit year: "12/1/26", "04.12.26"
        r"(?<![\w/.\-])(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|[12]\d|3[01])/\d{2}(?![\w/]|[.,]\d)"
        r"|(?<![\w/.\-])(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\.\d{2}(?![\w.\-]|,\d)"
        # without a year, when it cannot be a fraction, as a deadline: "renews on 12/31", "until
        # 15/4" ("closed on 12/25" is a yearly holiday)
        r"|(?i:\b(?:until|till|through|thru|by|due|renews?|expires?|ends?|dated?|as of)(?: on)?\s+)"
        r"(?:(?:0?[1-9]|1[0-2])/(?:1[3-9]|2\d|3[01])|(?:1[3-9]|2\d|3[01])/(?:0?[1-9]|1[0-2]))"
        r"(?![\w/]|[.,]\d)",
        f"A date in the cached prefix changes daily: {_MOVE}.",
        name="date_short",
        anchors=low("0/0", "00.00.00"),
    ),
    TextRule("relative_time", WARNING,
        # "as of this morning", "refreshed earlier today", "updated just now", "a few minutes ago"
        r"(?i:\bearlier (?:today|tonight|this (?:morning|afternoon|evening|week))\b"
        r"|\b(?:as of|as at|since|[a-z]+ed) (?:this (?:morning|afternoon|evening)|yesterday"
        r"|last night|just now|moments ago)\b"
        r"|\b(?:a|an|one|a few|a couple of|several|some|two|three|few) (?:moments?|seconds?|minutes?"
        r"|hours?|days?) ago\b"
        r"|\b(?:tonight|this (?:morning|afternoon|evening))\s*[:=])",
        f"A relative time ('as of this morning') is stale on the next call: {_MOVE}.",
        name="relative_words",
        anchors=low(
            *(" ago", "earlier ", "this morning", "this afternoon", "this evening"),
            *("yesterday", "last night", "just now"),
        ),
    ),
    TextRule("counter", WARNING,
        # "Days since last incident: 4", "Retries since boot: 231", "12 days since the last outage"
        r"(?i:\b[a-z]+ since\b[^\n:=.]{1,32}?[:=]\s*\d[\d,]*\b(?!\.\d)"
        # "41 s since last ping", "3 unread messages since your last visit"
        r"|\b\d[\d,]*(?:\.\d+)? ?(?:[a-z]+ ){0,2}?[a-z]+ since (?:the |our |your )?(?:last|previous)\b)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_since",
        anchors=low("since ", gate=g.digit_around(32, 40)),
    ),
    TextRule("counter", WARNING,
        # "You have asked 6 questions today", "Streak: 17 days"
        r"(?i:\b\d[\d,]* (?:[a-z]+ ){0,2}?[a-z]+s (?:so far )?(?:today|tonight|this (?:hour|morning"
        r"|afternoon|evening|week|month|session|conversation|chat))\b"
        r"|\b(?:streak|tally|karma)\b\s*(?:[:=]|is|of)?\s*\d[\d,]*)",
        f"A counter goes up on every call: {_MOVE}.",
        name="counter_period",
        anchors=(
            *low(
                *("today", "tonight", "this hour", "this morning", "this afternoon"),
                *("this evening", "this week", "this month", "this session", "this conversation"),
                "this chat",
                gate=g.digit_before(40),
            ),
            *low("streak", "tally", "karma", gate=g.digit_after(20)),
        ),
    ),
    TextRule("process_id", WARNING,
        # "uid 50231", "pid=48213", "sshd[20417]: ", "worker[31877] picked up"
        r"(?i:\b(?P<kind>e?uid|gid|pid|ppid|tid|process id|thread id)\b\s*(?:[:=#]\s*|is\s+)?)"
        r"(?P<id>\d{2,7})\b"
        r"|\b[a-z][a-z0-9_.-]{1,24}\[(?P<tag>\d{4,7})\](?=: | [a-z]{2,})",
        f"A process, thread or user id differs between runs and users: {_MOVE}.",
        anchors=(
            *low(
                "uid",
                "gid",
                "pid",
                "tid",
                "process id",
                "thread id",
                gate=g.digit_after(16, skip=3),
            ),
            *low("0]", gate=g.word_before(8, ("[",))),
        ),
        confirm=g.process_number,
    ),
    TextRule("live_data", WARNING,
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
        name="live_quote",
        anchors=(
            *low("(+0", "(-0", gate=g.word_after(14, ("%",))),
            *low("0?c", "0 ?c", "0?f", "0 ?f"),
            *low("spot", "closing", "last trade", gate=g.digit_after(24)),
            *low("0%", "0 %", gate=g.word_after(40, _LIVE_AFTER)),
        ),
    ),
    TextRule("request_id", ERROR,
        # "req 7f3a-11ef-9c2b", "ck-8812-aa31-f09d": groups of hex digits, letters and digits mixed
        r"\b(?:[A-Za-z]{1,6}[-_])?(?=[0-9a-fA-F-]*[a-fA-F])(?=[0-9a-fA-F-]*\d)"
        r"[0-9a-fA-F]{4}(?:-[0-9a-fA-F]{4}){2,}\b",
        f"A request or trace ID is new on every call: {_MOVE}.",
        name="hex_groups",
        anchors=hexes("hhhh-hhhh-hhhh"),
    ),
)
# fmt: on

REQUEST_RULES: tuple[RequestRule, ...] = (
    RequestRule(
        "ttl_order",
        ERROR,
        "Give the earlier layer ttl='1h' or this one ttl='5m': the API rejects a 1h breakpoint "
        "after a 5m one.",
        _layout.ttl_order,
    ),
    RequestRule(
        "lookback",
        WARNING,
        "Add a breakpoint in between: the cache looks back only 20 blocks from each breakpoint.",
        _layout.lookback,
    ),
    RequestRule(
        "below_minimum",
        WARNING,
        "Grow the cached prefix past the minimum or drop this breakpoint: below it nothing is "
        "cached.",
        _layout.below_minimum,
    ),
    RequestRule(
        "dynamic_in_system",
        ERROR,
        'Use Prompt(dynamic_placement="user"): in the system prompt the dynamic layer changes the '
        "prefix of the whole conversation on every call.",
        _layout.dynamic_in_system,
    ),
)

CHANGE_RULES: tuple[ChangeRule, ...] = (
    ChangeRule(
        "tool_order",
        ERROR,
        "Keep the tools in one fixed order (e.g. sorted by name): a new order breaks the whole "
        "cache.",
        _layout.tool_order,
    ),
    ChangeRule(
        "json_key_order",
        ERROR,
        "Serialize this JSON with a fixed key order (e.g. sort_keys=True): the same object in "
        "another order is a different prefix.",
        _layout.json_key_order,
    ),
    ChangeRule(
        "changing_breakpoint",
        WARNING,
        "Put the breakpoint on the last block that stays the same: a breakpoint on a changing "
        "block writes on every call and never reads.",
        _layout.changing_breakpoint,
    ),
    # last: it stays quiet where a rule above (or a text rule) already flags the change
    ChangeRule(
        "prefix_changed",
        WARNING,
        "This differs from the previous render{was}: move what changes to the dynamic layer "
        "(after the last breakpoint), or keep the cached layers byte-for-byte identical.",
        _layout.prefix_changed,
    ),
)

RULES: tuple[TextRule | RequestRule | ChangeRule, ...] = (
    *TEXT_RULES,
    *REQUEST_RULES,
    *CHANGE_RULES,
)
