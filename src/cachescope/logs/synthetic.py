"""Deterministic Claude Code corpora with their ground truth, for tests, benchmarks and tutorials.

`write_corpus(folder, sessions=..., seed=...)` writes `folder/projects/...` the way Claude Code
does — streamed multi-line responses, subagent files (nested and old-style), sidechain replays,
compactions, `<synthetic>` errors, 5m and 1h writes, fast mode, noise records — plus, when
`flaws=True`, broken JSON and bad counts; it returns a `Truth` with the exact totals an analyser
must find. Lines are built from byte templates, so a corpus of hundreds of MB takes seconds.
All content is placeholder text; every ID is made up.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import time as _time
from dataclasses import dataclass, field
from pathlib import Path

from cachescope._modeldata import default_table

# Model generations over the corpus's days (IDs from the shipped prices table).
GENERATIONS = (
    "claude-opus-4-5",
    "claude-sonnet-4-6",
    "claude-opus-4-6",
    "claude-opus-4-8",
    "claude-sonnet-5",
)
SUBAGENT_MODEL = "claude-haiku-4-5"
# Fresh input tokens per turn in each third of the corpus: three reads-per-fresh phases.
FRESH_LEVELS = ((20, 40), (4, 8), (1, 3))
WORDS = b"cache prefix token layer session placeholder stable dynamic prompt write read model agent".split()


@dataclass
class Truth:
    """What the corpus holds after de-duplication (tokens per UTC day, session, model, project)."""

    fresh: int = 0
    write_5m: int = 0
    write_1h: int = 0
    read: int = 0
    output: int = 0
    cost: float = 0.0
    responses: int = 0
    usage_lines: int = 0
    replays: int = 0
    synthetic: int = 0
    compactions: int = 0
    files: int = 0
    bytes: int = 0
    by_day: dict[str, list[int]] = field(default_factory=dict)
    by_session: dict[str, list[int]] = field(default_factory=dict)
    by_model: dict[str, list[int]] = field(default_factory=dict)
    by_project: dict[str, list[int]] = field(default_factory=dict)
    malformed: list[tuple[str, int]] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return self.write_5m + self.write_1h

    def add(
        self,
        day: str,
        session: str,
        model: str,
        project: str,
        counts: tuple[int, int, int, int, int],
        cost: float,
    ) -> None:
        self.responses += 1
        self.fresh += counts[0]
        self.write_5m += counts[1]
        self.write_1h += counts[2]
        self.read += counts[3]
        self.output += counts[4]
        self.cost += cost
        for table, key in (
            (self.by_day, day),
            (self.by_session, session),
            (self.by_model, model),
            (self.by_project, project),
        ):
            row = table.setdefault(key, [0, 0, 0, 0, 0])
            for i in range(5):
                row[i] += counts[i]


def _iso(ms: int) -> str:
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


class _Writer:
    """One file being written, counting its lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.lines = 0
        self.bytes = 0

    def line(self, data: bytes) -> int:
        self.fh.write(data + b"\n")
        self.lines += 1
        self.bytes += len(data) + 1
        return self.lines

    def close(self) -> None:
        self.fh.close()


class _Corpus:
    def __init__(
        self, folder: Path, seed: int, start: _dt.date, days: int, padding: int, flaws: bool
    ) -> None:
        self.rng = random.Random(seed)
        self.folder = folder
        self.start_ms = int(
            _dt.datetime(start.year, start.month, start.day, tzinfo=_dt.timezone.utc).timestamp()
            * 1000
        )
        self.days = days
        self.padding = padding
        self.flaws = flaws
        self.truth = Truth()
        self.table = default_table()
        text = b" ".join(self.rng.choice(WORDS) for _ in range(200_000))
        self.text = text
        self.counter = 0

    def pad(self, n: int) -> bytes:
        if n <= 0:
            return b"PLACEHOLDER"
        at = self.rng.randrange(0, len(self.text) - n - 1) if n < len(self.text) - 1 else 0
        return self.text[at : at + n]

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:012d}{self.rng.getrandbits(40):010x}"

    def price(
        self, model: str, ms: int, counts: tuple[int, int, int, int, int], fast: bool
    ) -> float:
        # The ground truth prices the spec's formula itself, on purpose: an oracle that went through
        # `cachescope.pricing` would agree with `logs` by construction.
        info = self.table.lookup(model)
        assert info is not None
        day = _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).date()
        rates = info.rates_at(day, counts[0] + counts[1] + counts[2] + counts[3])
        assert rates is not None
        usd = (
            counts[0] * rates.input
            + counts[1] * rates.cache_write_5m
            + counts[2] * rates.cache_write_1h
            + counts[3] * rates.cache_read
            + counts[4] * rates.output
        ) / 1e6
        return usd * (info.fast_multiplier or 1.0) if fast else usd

    # -- records -----------------------------------------------------------------------------------
    def envelope(self, ctx: dict[str, object], sidechain: bool) -> bytes:
        agent = f',"agentId":"{ctx["agent"]}"' if sidechain and ctx.get("agent") else ""
        return (
            f'{{"parentUuid":"{_uuid(self.rng)}","isSidechain":{"true" if sidechain else "false"}{agent},'
            f'"userType":"external","cwd":"{ctx["cwd"]}","sessionId":"{ctx["session"]}","version":"{ctx["version"]}",'
            f'"gitBranch":"main",'
        ).encode()

    def usage(
        self, counts: tuple[int, int, int, int, int], output: int, speed: str | None, layout: int
    ) -> bytes:
        fresh, w5, w1, read, _ = counts
        if layout == 0:
            body = (
                f'{{"input_tokens":{fresh},"cache_creation_input_tokens":{w5 + w1},"cache_read_input_tokens":{read},'
                f'"cache_creation":{{"ephemeral_5m_input_tokens":{w5},"ephemeral_1h_input_tokens":{w1}}},'
                f'"output_tokens":{output},"service_tier":"standard","inference_geo":"not_available"'
            )
        else:
            body = (
                f'{{"input_tokens":{fresh},"cache_creation_input_tokens":{w5 + w1},"cache_read_input_tokens":{read},'
                f'"output_tokens":{output},"server_tool_use":{{"web_search_requests":0,"web_fetch_requests":0}},'
                f'"service_tier":"standard","cache_creation":{{"ephemeral_1h_input_tokens":{w1},"ephemeral_5m_input_tokens":{w5}}},'
                f'"inference_geo":"","iterations":[]'
            )
        if speed is not None:
            body += f',"speed":"{speed}"'
        return (body + "}").encode()

    def assistant(
        self,
        ctx: dict[str, object],
        sidechain: bool,
        model: str,
        message_id: str,
        request_id: str | None,
        ms: int,
        content: bytes,
        stop: str | None,
        usage: bytes,
        error: bool = False,
    ) -> bytes:
        stop_text = f'"{stop}"' if stop else "null"
        request = f'"requestId":"{request_id}",' if request_id else ""
        flag = '"isApiErrorMessage":true,' if error else ""
        return (
            self.envelope(ctx, sidechain)
            + f'"message":{{"model":"{model}","id":"{message_id}","type":"message","role":"assistant","content":['.encode()
            + content
            + f'],"stop_reason":{stop_text},"stop_sequence":null,"usage":'.encode()
            + usage
            + f'}},{request}{flag}"type":"assistant","uuid":"{_uuid(self.rng)}","timestamp":"{_iso(ms)}"}}'.encode()
        )

    def content_block(self, kind: int) -> bytes:
        size = self.rng.randint(self.padding // 4, self.padding) if self.padding else 10
        if kind == 0:
            return (
                b'{"type":"thinking","thinking":"'
                + self.pad(size)
                + b'","signature":"PLACEHOLDER-signature"}'
            )
        if kind == 1:
            return b'{"type":"text","text":"' + self.pad(size) + b'"}'
        return (
            b'{"type":"tool_use","id":"toolu_'
            + self.next_id("").encode()
            + b'","name":"Bash","input":{"command":"ls","description":"'
            + self.pad(size // 4)
            + b'"}}'
        )

    def user(
        self, ctx: dict[str, object], sidechain: bool, ms: int, size: int, extra: bytes = b""
    ) -> bytes:
        return (
            self.envelope(ctx, sidechain)
            + b'"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_PLACEHOLDER","content":"'
            + self.pad(size)
            + f'"}}]}},"uuid":"{_uuid(self.rng)}","timestamp":"{_iso(ms)}"'.encode()
            + extra
            + b"}"
        )

    # -- one conversation (main chain or subagent) -------------------------------------------------
    def conversation(
        self,
        w: _Writer,
        ctx: dict[str, object],
        sidechain: bool,
        ms: int,
        turns: int,
        model: str,
        ttl_1h: bool,
        level: tuple[int, int],
        newer: bool,
    ) -> tuple[int, list[tuple[str, str, int, str]]]:
        rng = self.rng
        session = str(ctx["session"])
        project = str(ctx["project"])
        cached = 0  # tokens the cache holds for this conversation right now
        context = rng.randint(6000, 20000)  # prompt size before the first turn
        last_ms = ms
        responses: list[tuple[str, str, int, str]] = []
        for turn in range(turns):
            gap = rng.randint(3_000, 90_000)
            roll = rng.random()
            if turn and roll < 0.04:
                gap = rng.randint(61, 120) * 60_000  # idle beyond either TTL: the cache is gone
            ms = last_ms + gap
            if turn and (ms - last_ms) > (3_600_000 if ttl_1h else 300_000):
                cached = 0
            if turn and not sidechain and 0.04 <= roll < 0.06:
                self.truth.compactions += 1
                w.line(
                    self.envelope(ctx, sidechain)
                    + f'"type":"system","subtype":"compact_boundary","content":"Conversation compacted","uuid":"{_uuid(rng)}","timestamp":"{_iso(ms - 1000)}","level":"info","compactMetadata":{{"trigger":"auto","preTokens":{context}}}}}'.encode()
                )
                context = context // 5
                cached = min(cached, 4000)
            if turn and not sidechain and 0.06 <= roll < 0.075:
                model = rng.choice(GENERATIONS)
                cached = 0
            read = min(cached, context)
            write = context - read
            fresh = rng.randint(*level)
            output = rng.randint(20, 1500)
            w5, w1 = (0, write) if ttl_1h else (write, 0)
            counts = (fresh, w5, w1, read, output)
            info = self.table.lookup(model)
            fast = bool(info and info.fast_multiplier and rng.random() < 0.25)
            speed = "fast" if fast else ("standard" if newer else None)
            message_id = "msg_01" + self.next_id("")
            request_id = "req_011C" + self.next_id("")
            layout = 1 if newer else 0
            blocks = rng.randint(1, 4)
            for b in range(blocks):
                last = b == blocks - 1
                kind = 2 if last and rng.random() < 0.6 else b % 2
                if last and fast:
                    # a tie: the same totals without `speed`, then with it; the line with speed wins
                    w.line(
                        self.assistant(
                            ctx,
                            sidechain,
                            model,
                            message_id,
                            request_id,
                            ms + b * 700,
                            self.content_block(kind),
                            "tool_use",
                            self.usage(counts, output, None, layout),
                        )
                    )
                    self.truth.usage_lines += 1
                partial = output if last else rng.randint(1, 12)
                w.line(
                    self.assistant(
                        ctx,
                        sidechain,
                        model,
                        message_id,
                        request_id,
                        ms + b * 700,
                        self.content_block(kind),
                        "tool_use" if last else None,
                        self.usage(counts, partial, speed, layout),
                    )
                )
                self.truth.usage_lines += 1
            final_ms = ms + (blocks - 1) * 700
            self.truth.add(
                _iso(final_ms)[:10],
                session,
                model,
                project,
                counts,
                self.price(model, final_ms, counts, fast),
            )
            responses.append((message_id, model, final_ms, _iso(final_ms)))
            cached = context
            context += fresh + output + rng.randint(200, 3000)
            last_ms = final_ms + rng.randint(1000, 20000)
            extra = b""
            if rng.random() < 0.05:  # a Task result carries the subagent's usage: not a response
                extra = b',"toolUseResult":{"status":"completed","totalTokens":999,"usage":{"input_tokens":5,"output_tokens":7,"cache_read_input_tokens":100}}'
            w.line(
                self.user(
                    ctx,
                    sidechain,
                    last_ms,
                    rng.randint(self.padding // 2, self.padding * 2) if self.padding else 10,
                    extra,
                )
            )
            if rng.random() < 0.02:
                self.truth.synthetic += 1
                self.truth.usage_lines += 1
                w.line(
                    self.assistant(
                        ctx,
                        sidechain,
                        "<synthetic>",
                        _uuid(rng),
                        None,
                        last_ms + 10,
                        b'{"type":"text","text":"API Error: PLACEHOLDER"}',
                        "stop_sequence",
                        self.usage((0, 0, 0, 0, 0), 0, None, 0),
                        error=True,
                    )
                )
            if (
                rng.random() < 0.03
            ):  # old-style progress record nesting a subagent message: not counted
                w.line(
                    (
                        f'{{"type":"progress","data":{{"message":{{"type":"assistant","message":{{"model":"{SUBAGENT_MODEL}","id":"msg_01PROGRESS{self.counter}","usage":{{"input_tokens":3,"output_tokens":4}}}}}}}},'
                        f'"sessionId":"{session}","uuid":"{_uuid(rng)}","timestamp":"{_iso(last_ms)}"}}'
                    ).encode()
                )
        return last_ms, responses

    def flaw_lines(self, w: _Writer, ctx: dict[str, object], ms: int) -> None:
        rng = self.rng
        rel = str(w.path)
        kind = rng.randrange(4)
        good = self.assistant(
            ctx,
            False,
            GENERATIONS[0],
            "msg_01BROKEN" + self.next_id(""),
            "req_BROKEN" + self.next_id(""),
            ms,
            self.content_block(1),
            "end_turn",
            self.usage((9, 9, 0, 9, 9), 9, None, 0),
        )
        if kind == 0:  # a write cut off mid-line
            cut = rng.randint(40, len(good) - 2)
            while good[cut - 1] == ord("}"):
                cut -= 1
            line = w.line(good[:cut])
        elif kind == 1:
            line = w.line(good.replace(b'"input_tokens":9', b'"input_tokens":-5', 1))
        elif kind == 2:
            line = w.line(good.replace(b'"output_tokens":9', b'"output_tokens":12.5', 1))
        else:
            line = w.line(b'{"type":"assistant","message":{"usage":{"input_tokens":1}}' + b"}}")
        self.truth.malformed.append((rel, line))

    def session(
        self, index: int, n_projects: int, turns: tuple[int, int], subagent_rate: float
    ) -> None:
        rng = self.rng
        project_index = index % n_projects
        project = f"-home-user-work-project{project_index}"
        session = _uuid(rng)
        day = rng.randrange(self.days)
        ms = self.start_ms + day * 86_400_000 + rng.randint(7 * 3600, 19 * 3600) * 1000
        model = GENERATIONS[min(len(GENERATIONS) - 1, day * len(GENERATIONS) // self.days)]
        level = FRESH_LEVELS[min(2, day * 3 // self.days)]
        ttl_1h = rng.random() < 0.4
        newer = rng.random() < 0.6
        ctx: dict[str, object] = {
            "cwd": "/home/user/work/project" + str(project_index),
            "session": session,
            "project": project,
            "version": "2.1.63" if newer else "1.0.98",
        }
        base = self.folder / "projects" / project
        w = _Writer(base / f"{session}.jsonl")
        w.line(
            b'{"type":"summary","summary":"PLACEHOLDER session title","leafUuid":"'
            + _uuid(rng).encode()
            + b'"}'
        )
        w.line(
            b'{"type":"file-history-snapshot","messageId":"'
            + _uuid(rng).encode()
            + b'","snapshot":{"trackedFileBackups":{"PLACEHOLDER.py":"'
            + self.pad(self.padding * 6)
            + b'"}},"isSnapshotUpdate":false}'
        )
        w.line(self.user(ctx, False, ms - 5000, 40))
        end_ms, responses = self.conversation(
            w, ctx, False, ms, rng.randint(*turns), model, ttl_1h, level, newer
        )
        if self.flaws and rng.random() < 0.3:
            self.flaw_lines(w, ctx, end_ms)
        w.line(
            b'{"type":"queue-operation","operation":"enqueue","timestamp":"'
            + _iso(end_ms).encode()
            + b'","content":"the word usage in a prompt: \\"usage\\":{}"}'
        )
        self.close(w)
        n_agents = 0
        while rng.random() < subagent_rate and n_agents < 3:
            n_agents += 1
            agent = f"a{rng.getrandbits(64):016x}"
            actx = dict(ctx, agent=agent)
            nested = newer or rng.random() < 0.5
            path = (
                base / session / "subagents" / f"agent-{agent}.jsonl"
                if nested
                else base / f"agent-{agent}.jsonl"
            )
            aw = _Writer(path)
            aw.line(self.user(actx, True, ms + 1000, 60))
            self.conversation(
                aw,
                actx,
                True,
                ms + 2000 + n_agents * 1000,
                rng.randint(2, max(3, turns[1] // 3)),
                SUBAGENT_MODEL,
                False,
                level,
                newer,
            )
            if (
                responses
            ):  # a replay of a parent response under another request id: not counted again
                message_id, model_id, first_ms, _ = rng.choice(responses)
                aw.line(
                    self.assistant(
                        actx,
                        True,
                        model_id,
                        message_id,
                        "req_011CREPLAY" + self.next_id(""),
                        first_ms + 5000,
                        self.content_block(1),
                        "end_turn",
                        self.usage((1, 100, 0, 1000, 50), 50, None, 0),
                    )
                )
                self.truth.replays += 1
                self.truth.usage_lines += 1
            self.close(aw)
            if nested:
                (path.parent / f"agent-{agent}.meta.json").write_text(
                    '{"agentType":"general-purpose"}'
                )

    def close(self, w: _Writer) -> None:
        w.close()
        self.truth.files += 1
        self.truth.bytes += w.bytes


def write_corpus(
    folder: str | os.PathLike[str],
    *,
    sessions: int = 30,
    seed: int = 7,
    start: _dt.date = _dt.date(2026, 9, 1),
    days: int = 21,
    turns: tuple[int, int] = (5, 25),
    subagent_rate: float = 0.35,
    padding: int = 300,
    flaws: bool = True,
) -> Truth:
    """Write a corpus under `folder/projects/` and return its ground truth.

    Parameters
    ----------
    folder:
        Where to write (used as a Claude configuration folder: pass it as `CLAUDE_CONFIG_DIR`).
    sessions:
        Main-chain sessions; each may spawn up to three subagents.
    seed:
        Same seed, same bytes.
    start, days:
        The UTC days the sessions start on; models and fresh-token levels change across them.
    turns:
        Range of assistant turns per main-chain session.
    subagent_rate:
        Chance of each further subagent.
    padding:
        Typical bytes of text per content block and tool result (sets the corpus size).
    flaws:
        Also write broken JSON, negative and non-integer counts (listed in `Truth.malformed`).
    """
    corpus = _Corpus(Path(folder), seed, start, days, padding, flaws)
    n_projects = max(1, sessions // 12)
    for index in range(sessions):
        corpus.session(index, n_projects, turns, subagent_rate)
    return corpus.truth
