"""The `cachescope` command: `usage` (reports over Claude Code logs and ledgers) and `demo`.

Only wiring lives here: `usage` calls `cachescope.logs.load` and `report`, `demo` calls
`cachescope._demo.main`. A user error prints one message and exits with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

USAGE_HELP = """\
Report prompt-caching usage from Claude Code transcripts and cachescope ledgers.

With no PATH, reads the folders Claude Code writes to: every entry of CLAUDE_CONFIG_DIR
(comma-separated), else $XDG_CONFIG_HOME/claude (default ~/.config/claude) and ~/.claude.
Responses are de-duplicated once and every grouping is built from the same rows, so the
groupings' totals agree. Days are UTC. Logs can undercount what was billed.
"""


def _usage_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "usage",
        help="caching usage report from Claude Code logs and cachescope ledgers",
        description=USAGE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="a Claude folder, a projects/ folder, a folder of transcripts, or a .jsonl transcript or "
        "ledger (default: the Claude Code folders)",
    )
    p.add_argument(
        "--by",
        choices=["day", "week", "month", "session", "model", "project"],
        default="day",
        help="grouping of the table and of --csv (default: day; weeks start on Monday); --json "
        "always holds every grouping",
    )
    p.add_argument(
        "--since", metavar="DATE", help="first UTC day to include, YYYY-MM-DD or YYYYMMDD"
    )
    p.add_argument(
        "--until", metavar="DATE", help="last UTC day to include, YYYY-MM-DD or YYYYMMDD"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help="print the whole report as JSON (schema: docs/usage-json-schema.md)",
    )
    out.add_argument("--csv", action="store_true", help="print the --by grouping as CSV")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="read every file again and leave the incremental cache "
        "($XDG_CACHE_HOME/cachescope/logs) alone",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="never show the progress bar (it shows on long loads when stderr is a terminal)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes for reading (default: one per core)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachescope", description="Make Anthropic prompt caching visible and debuggable."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _usage_parser(sub)
    sub.add_parser(
        "demo",
        help="run the offline demo on the simulator",
        description="Run the offline demo on the simulator.",
    )
    return parser


def _arguments(args: argparse.Namespace) -> list[str]:
    """Everything in the command line that shapes the output (for the output cache's key)."""
    form = "json" if args.json else "csv" if args.csv else "text"
    return [form, args.by, args.since or "", args.until or "", "\x01", *args.paths]


def _replay(args: argparse.Namespace, started: float) -> tuple[Any, str] | None:
    """Print the cached output of an earlier identical run over unchanged files, if any.

    Returns None when it printed it, else (path, key) for storing this run's output (or None
    when the cache cannot be consulted: the normal path then reports any error itself).
    """
    from cachescope.logs import cached_output

    paths: list[str | os.PathLike[str]] | None = list(args.paths) or None
    try:
        entry, where = cached_output(paths, _arguments(args))
    except Exception:  # the full path reports (or recovers from) whatever went wrong
        return (None, "")
    if entry is None:
        return where
    import dataclasses
    import warnings

    for module, category, message, filename, lineno in entry["warnings"]:
        kind = getattr(importlib.import_module(module), category, UserWarning)
        warnings.warn_explicit(message, kind, filename, lineno)
    seconds = time.perf_counter() - started
    if entry["form"] == "json":
        import orjson

        # the body around the load report's per-run figures (see _run_usage)
        figures = b'0,\n    "filesFromCache": %d,\n    "seconds": %s,\n' % (
            entry["files"],
            orjson.dumps(round(seconds, 3)),
        )
        sys.stdout.buffer.write(entry["head"] + figures + entry["tail"])
    elif entry["form"] == "text":
        report = entry["report"]
        summary = dataclasses.replace(
            report, files_read=0, files_from_cache=report.files, seconds=seconds
        ).summary()
        sys.stdout.write(entry["head"] + summary + entry["tail"])
    else:
        sys.stdout.write(entry["body"])
    return None


def _run_usage(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    where = None
    if not args.no_cache:
        where = _replay(args, started)
        if where is None:
            return 0
    import warnings

    import orjson

    from cachescope.logs import load, report

    with warnings.catch_warnings(record=True) as caught:
        df = load(
            args.paths or None,
            since=args.since,
            until=args.until,
            no_cache=args.no_cache,
            progress=False if args.no_progress else None,
            workers=args.workers,
        )
        result = report(df)
    for w in caught:  # shown now as they would have been; kept for the replay
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    entry: dict[str, Any] = {
        "warnings": [
            (w.category.__module__, w.category.__qualname__, str(w.message), w.filename, w.lineno)
            for w in caught
        ]
    }
    if args.json:
        body = orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"
        sys.stdout.buffer.write(body)
        # kept as the bytes before and after `filesRead`, `filesFromCache` and `seconds` (keys
        # at this indent and with a raw newline occur nowhere else: strings escape newlines)
        mark = b'\n    "filesRead": '
        head, _, rest = body.partition(mark)
        figures = re.match(rb'\d+,\n    "filesFromCache": \d+,\n    "seconds": [0-9.e+-]+,\n', rest)
        if body.count(mark) != 1 or figures is None:
            where = None
        else:
            files = result.load_report.files
            entry.update(form="json", head=head + mark, tail=rest[figures.end() :], files=files)
    elif args.csv:
        text = result.by(args.by).to_csv()
        sys.stdout.write(text)
        entry.update(form="csv", body=text)
    else:
        text = result.to_text(args.by) + "\n"
        sys.stdout.write(text)
        summary = result.load_report.summary()
        before, found, after = text.partition(summary)
        entry.update(form="text", head=before, tail=after, report=result.load_report)
        if not found:
            where = None
    if where is not None and where[0] is not None:
        from cachescope.logs import store_output

        try:
            store_output(where, entry)
        except OSError:
            pass  # the load already warned when the cache folder cannot be written
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cachescope` console script."""
    from cachescope._errors import CachescopeError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "usage":
            return _run_usage(args)
        from cachescope import _demo  # type: ignore[attr-defined,unused-ignore]

        result = _demo.main()
        return int(result) if isinstance(result, int) else 0
    except CachescopeError as error:
        print(f"cachescope {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
