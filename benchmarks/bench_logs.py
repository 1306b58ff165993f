"""Log ingestion (issue 7): `cachescope.logs.load` / `cachescope usage` against ccusage 20.0.24.

Generates (once) a corpus the size of the published analysis — 3,007 sessions, ~4,900 files,
~775 MB, ~400K usage lines — into `benchmarks/.work/logs-corpus`, installs ccusage 20.0.24 into
`benchmarks/.work/ccusage`, and times in the same run, best of `RUNS`:
- ccusage `daily --json --offline` (CLAUDE_CONFIG_DIR=<corpus>, a throwaway HOME);
- `cachescope usage --json --no-cache` (cold, whole command) and `load(no_cache=True)` in-process;
- the same two warm (second run, incremental cache filled).
Token totals of all three (ccusage, cachescope, the generator's truth) must be identical.
Run: `.venv/bin/python -m benchmarks.bench_logs` (or `make bench`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
CORPUS = WORK / "logs-corpus"
CCUSAGE_DIR = WORK / "ccusage"
CCUSAGE = CCUSAGE_DIR / "node_modules" / "@ccusage" / "ccusage-linux-x64" / "bin" / "ccusage"
PARAMS = {
    "sessions": 3007,
    "seed": 2026,
    "days": 55,
    "turns": [17, 70],
    "subagent_rate": 0.42,
    "padding": 800,
}
RUNS = 3
KEYS = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens", "totalTokens")


def corpus() -> dict[str, object]:
    marker = CORPUS / "truth.json"
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("params") == PARAMS:
            return dict(saved["truth"])
    shutil.rmtree(CORPUS, ignore_errors=True)
    from cachescope.logs import synthetic

    started = time.perf_counter()
    params = dict(PARAMS)
    truth = synthetic.write_corpus(
        CORPUS,
        sessions=int(params["sessions"]),  # type: ignore[call-overload]
        seed=int(params["seed"]),  # type: ignore[call-overload]
        days=int(params["days"]),  # type: ignore[call-overload]
        turns=tuple(params["turns"]),  # type: ignore[arg-type]
        subagent_rate=float(params["subagent_rate"]),  # type: ignore[arg-type]
        padding=int(params["padding"]),  # type: ignore[call-overload]
    )
    summary = {
        "inputTokens": truth.fresh,
        "outputTokens": truth.output,
        "cacheCreationTokens": truth.writes,
        "cacheReadTokens": truth.read,
        "totalTokens": truth.fresh + truth.writes + truth.read + truth.output,
        "files": truth.files,
        "bytes": truth.bytes,
        "usageLines": truth.usage_lines,
        "responses": truth.responses,
        "malformed": len(truth.malformed),
        "seconds": round(time.perf_counter() - started, 1),
    }
    marker.write_text(json.dumps({"params": PARAMS, "truth": summary}))
    return summary


def ensure_ccusage() -> Path:
    if not CCUSAGE.exists():
        CCUSAGE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "ccusage@20.0.24"],
            cwd=CCUSAGE_DIR,
            check=True,
        )
    CCUSAGE.chmod(0o755)  # the package ships the binary without its execute bit
    return CCUSAGE


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, check=True)
    return time.perf_counter() - started, done.stdout


def best(cmd: list[str], env: dict[str, str], before: object = None) -> tuple[float, bytes]:
    results = []
    for _ in range(RUNS):
        if callable(before):
            before()
        results.append(timed(cmd, env))
    return min(results, key=lambda r: r[0])


def main() -> None:
    truth = corpus()
    print(
        f"corpus: {truth['files']:,} files, {int(truth['bytes']) / 1e6:,.0f} MB, {truth['usageLines']:,} usage lines, {truth['responses']:,} responses"
    )
    binary = ensure_ccusage()
    home = tempfile.mkdtemp(prefix="bench-home-")
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME")
    }
    env = dict(base_env, HOME=home, CLAUDE_CONFIG_DIR=str(CORPUS), XDG_CACHE_HOME=cache)
    try:
        # warm the page cache so every tool reads from memory
        timed([str(binary), "daily", "--json", "--offline"], env)
        cc_time, cc_out = best([str(binary), "daily", "--json", "--offline"], env)
        cc_totals = json.loads(cc_out)["totals"]

        python = sys.executable
        cli = [python, "-m", "cachescope.cli", "usage", "--json", "--no-progress"]
        cold_cli, out = best([*cli, "--no-cache"], env)
        ours = json.loads(out)["totals"]
        load_snippet = (
            "import time,sys; t=time.perf_counter(); from cachescope.logs import load; "
            "df=load(no_cache={nc}); print(time.perf_counter()-t); print(df.attrs['load_report'].files_read, file=sys.stderr)"
        )
        cold_load = min(
            float(timed([python, "-c", load_snippet.format(nc=True)], env)[1]) for _ in range(RUNS)
        )

        def clear_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        first_cli, _ = best(cli, env, before=clear_cache)  # a run that also fills the cache
        subprocess.run(cli, env=env, capture_output=True, check=True)
        warm_cli, out_warm = best(cli, env)
        warm_load = min(
            float(timed([python, "-c", load_snippet.format(nc=False)], env)[1]) for _ in range(RUNS)
        )
        warm_totals = json.loads(out_warm)["totals"]
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)

    same = all(cc_totals[k] == ours[k] == truth[k] == warm_totals[k] for k in KEYS)
    print(f"token totals identical (ccusage = cachescope cold = warm = truth): {same}")
    for k in KEYS:
        print(
            f"  {k:22s} ccusage {cc_totals[k]:>16,}  cachescope {ours[k]:>16,}  truth {int(truth[k]):>16,}"
        )  # type: ignore[call-overload]
    rows = [
        ("ccusage 20.0.24 daily --json --offline", cc_time),
        ("cachescope usage --json --no-cache (cold)", cold_cli),
        ("cachescope.logs.load(no_cache=True) (cold, incl. imports)", cold_load),
        ("cachescope usage --json, first run filling the cache", first_cli),
        ("cachescope usage --json (warm)", warm_cli),
        ("cachescope.logs.load() (warm, incl. imports)", warm_load),
    ]
    print(f"\n| run (best of {RUNS}) | wall s | × ccusage |\n| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / cc_time:.2f} |")


if __name__ == "__main__":
    main()
