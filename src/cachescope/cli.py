"""The `cachescope` command: `usage` (reports over Claude Code logs and ledgers) and `demo`.

Only wiring lives here: `usage` calls `cachescope.logs.load` and `report`, `demo` calls
`cachescope._demo.main`. A user error prints one message and exits with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def _run_usage(args: argparse.Namespace) -> int:
    import orjson

    from cachescope.logs import load, report

    df = load(
        args.paths or None,
        since=args.since,
        until=args.until,
        no_cache=args.no_cache,
        progress=False if args.no_progress else None,
        workers=args.workers,
    )
    result = report(df)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    elif args.csv:
        sys.stdout.write(result.by(args.by).to_csv())
    else:
        sys.stdout.write(result.to_text(args.by) + "\n")
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
