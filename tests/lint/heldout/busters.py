"""Held-out cache-buster templates for `lint`, written apart from the rules.

Each template draws its variable parts from a seeded `random.Random`, so the same seed gives the
same corpus. They imitate what production system prompts and tool descriptions carry: session,
user, ticket and order IDs in many formats, build numbers and git SHAs, version + timestamp
banners, relative times, locale and RFC 2822 dates, clock times, countdowns, seeds, nonces,
JWT-like tokens, counters, "as of today" lines, weather and stock snippets, A/B buckets with random
suffixes. None of them was copied from the shipped corpus (`tests/stability/test_lint_quality.py`)
or from the rules' own tests.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable

MONTHS = "January February March April May June July August September October November December"
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"
CITIES = ["Berlin", "Austin", "Osaka", "Lyon", "Toronto", "Nairobi", "Lisbon", "Perth"]


def _hex(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789abcdef") for _ in range(n))


def _alnum(r: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def _b64(r: random.Random, n: int) -> str:
    raw = bytes(r.getrandbits(8) for _ in range(n))
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _month(r: random.Random) -> str:
    return r.choice(MONTHS.split())


def _day(r: random.Random) -> str:
    return r.choice(DAYS.split())


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _year(r: random.Random) -> int:
    return r.randint(2025, 2028)


def _hm(r: random.Random) -> str:
    return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"


def _hms(r: random.Random) -> str:
    return f"{_hm(r)}:{r.randint(0, 59):02d}"


def _jwt(r: random.Random) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    return f"{head}.{_b64(r, r.randint(30, 60))}.{_b64(r, 32)}"


TEMPLATES: list[Callable[[random.Random], str]] = [
    # identifiers of users, sessions, tickets, orders
    lambda r: f"You are speaking with user #{r.randint(1000, 999999)}.",
    lambda r: f"Ticket ID: {r.randint(10000, 99999)}-{r.choice(string.ascii_uppercase)}",
    lambda r: f"Order number: {r.choice(['ORD', 'SO', 'PO'])}-{r.randint(100000, 9999999)}",
    lambda r: f"Support case {r.choice(['CS', 'INC', 'SR'])}{r.randint(1000000, 9999999)} is open.",
    lambda r: f"Customer reference {_alnum(r, 10, string.ascii_uppercase + string.digits)}",
    lambda r: f"session={_b64(r, 18)}",
    lambda r: f"Cart: cart_{_alnum(r, 14)}",
    lambda r: f"The caller's account is acct-{r.randint(10**7, 10**9)}.",
    # builds, commits, banners
    lambda r: f"Build {r.randint(1000, 99999)} (commit {_hex(r, 7)})",
    lambda r: f"Deployed revision {_hex(r, 40)}",
    lambda r: (
        f"HelpBot v{r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 30)} "
        f"built {_year(r)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} {_hm(r)}"
    ),
    lambda r: (
        f"[release {r.randint(1, 5)}.{r.randint(0, 9)} | {_month(r)[:3]} {r.randint(1, 28)} {_hms(r)}]"
    ),
    # dates in many forms
    lambda r: f"Valid on {r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{_year(r)} only.",
    lambda r: f"Prepared {_month(r)[:3]} {_ordinal(r.randint(1, 28))} for this account.",
    lambda r: (
        f"Date: {_day(r)[:3]}, {r.randint(1, 28)} {_month(r)[:3]} {_year(r)} {_hms(r)} "
        f"{r.choice(['+0000', '-0500', '+0100', 'GMT'])}"
    ),
    lambda r: f"Today is the {_ordinal(r.randint(1, 28))} of {_month(r)}.",
    lambda r: f"As of today ({_month(r)} {r.randint(1, 28)}) the sale is running.",
    lambda r: f"Fiscal week {r.randint(1, 52)}, day {r.randint(1, 364)}.",
    lambda r: f"Schedule for {_year(r)}-W{r.randint(1, 52):02d}",
    lambda r: f"Tomorrow ({_day(r)} {r.randint(1, 12)}/{r.randint(1, 28)}) the office is closed.",
    # times
    lambda r: f"Last refreshed at {_hm(r)} UTC.",
    lambda r: (
        f"It's {_day(r)} {r.choice(['morning', 'afternoon', 'evening', 'night'])} for the user."
    ),
    lambda r: f"Server clock reads {_hms(r)}.",
    lambda r: f"Report generated {r.randint(1, 12)}:{r.randint(0, 59):02d}{r.choice(['am', 'pm'])}",
    lambda r: f"Local time in {r.choice(CITIES)}: {_hm(r)}",
    # relative times and countdowns
    lambda r: f"Profile last edited {r.randint(2, 59)} minutes ago.",
    lambda r: f"The user signed up {r.randint(2, 30)} days ago.",
    lambda r: f"Offer ends in {r.randint(1, 23)}h {r.randint(1, 59)}m.",
    lambda r: f"{r.randint(2, 40)} days left until the deadline.",
    lambda r: f"Session expires in {r.randint(2, 59)} minutes.",
    # randomness
    lambda r: f"random_state={r.randint(10, 2**31)}",
    lambda r: f"Nonce {_b64(r, 16)}",
    lambda r: f"Bearer {_jwt(r)}",
    lambda r: f"Sampling temperature jitter {r.random():.9f}",
    lambda r: f"Today's lucky number: {r.randint(100, 99999)}",
    # counters and quotas
    lambda r: f"Requests handled today: {r.randint(10, 90000)}",
    lambda r: f"You are caller {r.randint(2, 400)} in the queue.",
    lambda r: f"This chat has {r.randint(2, 90)} messages.",
    lambda r: f"Page views this hour: {r.randint(100, 99999):,}",
    lambda r: f"Credits left: {r.randint(1, 5000)}",
    # live data snippets
    lambda r: (
        f"Weather in {r.choice(CITIES)}: {r.randint(-10, 35)}°C, wind {r.randint(0, 60)} km/h, "
        f"humidity {r.randint(10, 99)}%"
    ),
    lambda r: (
        f"{r.choice(['ACME', 'GLOBX', 'INITC'])} is trading at ${r.uniform(10, 900):.2f} "
        f"({r.choice('+-')}{r.uniform(0, 9):.2f}% today)"
    ),
    lambda r: f"Queue length right now: {r.randint(0, 300)}",
    # experiments and feature flags
    lambda r: (
        f"experiment bucket: checkout_{r.choice(['a', 'b', 'c'])}_{_alnum(r, 6, string.ascii_lowercase + string.digits)}"
    ),
    lambda r: f"variant={r.choice(['control', 'treatment'])}-{_hex(r, 8)}",
    lambda r: f"traceparent: 00-{_hex(r, 32)}-{_hex(r, 16)}-01",
]


def rules_on_line(line: str, model: str = "claude-sonnet-5") -> list[str]:
    """The rule ids `lint` reports for `line` placed between two plain lines of a prompt."""
    from cachescope import lint

    return [finding.rule for finding in lint(f"Intro line.\n{line}\nOutro.", model=model)]
