"""`simcore.handle` (the whole request in one C call) against the Python path it shortcuts.

`Simulator.process` answers the common request shape with `cachescope._native.simcore.handle`
and everything else with `Simulator._process`. Both read and write the same memo, cache entries,
diagnostics records, message IDs and clock, so a simulator with the C path and one without
(`sim._native = None`) must agree on every response, error, timing and on their whole state
afterwards — whatever mix of common and unusual requests they get.
"""

from __future__ import annotations

import copy
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachescope.sim import APIErrorResponse, Simulator, VirtualClock
from cachescope.sim import _simcore_py as twin
from cachescope.sim._responder import _WORDS, default_reply

C = twin.native()
needs_c = pytest.mark.skipif(C is None, reason="simcore is not built (or CACHESCOPE_PURE=1)")

START = 1_800_000_000.0
MODEL = "claude-sonnet-5"
LONG = "The quick brown fox checks the cache. " * 40  # well above every model's minimum


def _pair(**kwargs: Any) -> tuple[Simulator, Simulator]:
    fast = Simulator(clock=VirtualClock(start=START), **kwargs)
    slow = Simulator(clock=VirtualClock(start=START), **kwargs)
    slow._native = None  # the Python path (`_process`) for every request
    return fast, slow


def _answer(sim: Simulator, body: Any, api_key: str = "sim") -> Any:
    try:
        outcome = sim.process(body, api_key)
    except APIErrorResponse as error:
        return ("error", error.status, error.error_type, error.message)
    message = dict(outcome.message)
    message["id"] = message["id"][len(sim._id_prefix) :]  # the instance number differs
    return (message, outcome.ttft_ms, outcome.total_ms)


def _state(sim: Simulator) -> Any:
    workspaces = {}
    for key, workspace in sim._workspaces.items():
        records = [(k[len(sim._id_prefix) :], v) for k, v in workspace.records.items()]
        workspaces[key] = (dict(workspace.entries), records)
    return (sim.clock.now(), sim.requests, workspaces)


def _same(bodies: list[Any], **kwargs: Any) -> Simulator:
    fast, slow = _pair(**kwargs)
    for n, body in enumerate(bodies):
        a = _answer(fast, copy.deepcopy(body))
        b = _answer(slow, copy.deepcopy(body))
        assert a == b, f"request {n}"
    assert _state(fast) == _state(slow)
    return fast


def _conversation(turns: int, *, top: bool = False, tools: bool = True) -> list[dict[str, Any]]:
    body_tools = [
        {
            "name": f"tool_{i}",
            "description": LONG[: 200 + i],
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
        for i in range(3)
    ]
    system = [{"type": "text", "text": "System. " + LONG}]
    system[-1]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    history: list[dict[str, Any]] = []
    bodies = []
    for turn in range(turns):
        history.append({"role": "user", "content": [{"type": "text", "text": f"{turn} " + LONG}]})
        messages = copy.deepcopy(history)
        if not top:
            messages[-1]["content"][0]["cache_control"] = {"type": "ephemeral"}
        body: dict[str, Any] = {"model": MODEL, "max_tokens": 300, "messages": messages}
        if tools:
            body["tools"] = body_tools
        body["system"] = system
        if top:
            body["cache_control"] = {"type": "ephemeral"}
        bodies.append(body)
        history.append({"role": "assistant", "content": f"answer {turn} " + LONG[:300]})
    return bodies


def _fast_requests(sim: Simulator, bodies: list[Any]) -> int:
    """How many of `bodies` the C path answered (the others went to `_process`)."""
    calls = 0
    python_path = sim._process

    def counting(body: Any, api_key: str) -> Any:
        nonlocal calls
        calls += 1
        return python_path(body, api_key)

    sim._process = counting  # type: ignore[method-assign]
    for body in bodies:
        sim.handle_messages(body)
    return len(bodies) - calls


@needs_c
def test_the_common_shape_is_answered_in_c() -> None:
    sim = Simulator(clock=VirtualClock(start=START))
    bodies = _conversation(12)
    # the first request teaches the model and the tools/system; the rest are all in C
    assert _fast_requests(sim, bodies) == len(bodies) - 1
    # the snapshots it kept are what plan() would read (and their C copy of the counts agrees)
    # (b"" for a snapshot only the Python path wrote: here the first request's, whose first
    # message still carried the breakpoint)
    (memo,) = sim._memos.values()
    kept = 0
    for snapshot in memo.snapshots.values():
        assert len(snapshot.raw) == len(snapshot.states)
        assert len(snapshot.packed) == 8 * len(snapshot.tokens)
        if snapshot.ctokens:
            kept += 1
            assert array("q", snapshot.ctokens).tolist() == snapshot.tokens
    assert kept == 1


@needs_c
def test_the_default_reply_in_c_is_the_python_one() -> None:
    for seed in (0, 1, 12, 2**48 - 1, 2**48, 2**64 - 1, 0xDEAD_BEEF_1234_5678):
        assert C.default_reply(seed, _WORDS) == default_reply(seed)


@needs_c
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"refresh": "hit"},
        {"minimum_applies_to": "segment"},
        {"cross_ttl_reads": False},
        {"lookback": 2},
        {"availability": "immediate"},
        {"auto_advance": False},
        {"ttl_grace_seconds": 5},
        {"min_cacheable_tokens": 0},
        {"diagnostics_history": 3},
        {"lookback_unit": "message"},
        {"latency_base_ms": 0},
    ],
)
def test_answers_and_state_agree_across_settings(options: dict[str, Any]) -> None:
    bodies = _conversation(10) + _conversation(6, top=True) + _conversation(5, tools=False)
    _same(bodies, **options)


@needs_c
def test_expiry_refresh_and_interleaved_conversations_agree() -> None:
    fast, slow = _pair()
    a, b = _conversation(8), _conversation(8, top=True)
    for n in range(8):
        for body in (a[n], b[n]):
            assert _answer(fast, body) == _answer(slow, body)
        if n % 3 == 2:  # past the 5-minute TTL: reads miss, the 1h system entry survives
            fast.clock.advance(400)  # type: ignore[attr-defined]
            slow.clock.advance(400)  # type: ignore[attr-defined]
    assert _state(fast) == _state(slow)


def _agent_conversation(turns: int) -> list[dict[str, Any]]:
    """Requests of an agent loop: parallel tool calls answered first, then text, an error."""
    bodies = _conversation(1)
    messages = bodies[0]["messages"]
    for turn in range(turns):
        ids = [f"toolu_{turn}_{k}" for k in range(turn % 3 + 1)]
        messages = copy.deepcopy(messages)
        for message in messages:  # one rolling breakpoint
            if isinstance(message["content"], list):
                for block in message["content"]:
                    block.pop("cache_control", None)
        uses = [{"type": "tool_use", "id": i, "name": "tool_0", "input": {"q": i}} for i in ids]
        results: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": i, "content": f"{i}: " + LONG[: 40 * turn]}
            for i in reversed(ids)
        ]
        results[0]["is_error"] = turn % 4 == 3
        results.append(
            {"type": "text", "text": f"turn {turn}", "cache_control": {"type": "ephemeral"}}
        )
        messages += [
            {"role": "assistant", "content": [{"type": "text", "text": f"step {turn}"}, *uses]},
            {"role": "user", "content": results},
        ]
        bodies.append({**bodies[0], "messages": messages})
    return bodies


def _unpaired(body: dict[str, Any], how: int) -> dict[str, Any]:
    """`body` with its last tool round broken in one of five ways (the API refuses each)."""
    body = copy.deepcopy(body)
    messages = body["messages"]
    results = messages[-1]["content"]
    if how == 0:  # a result missing
        del results[0]
    elif how == 1:  # text before the results
        results.insert(0, results.pop())
    elif how == 2:  # a result for another id
        results[0]["tool_use_id"] = "toolu_nope"
    elif how == 3:  # the call left unanswered as the last message (a prefill)
        del messages[-1]
    else:  # a tool_use in the user message
        results.append({"type": "tool_use", "id": "t", "name": "tool_0", "input": {}})
    return body


@needs_c
def test_agent_loops_are_answered_in_c_and_agree() -> None:
    bodies = _agent_conversation(10)
    sim = Simulator(clock=VirtualClock(start=START))
    # the first request teaches the model and the tools/system; tool rounds stay in C
    assert _fast_requests(sim, bodies) == len(bodies) - 1
    broken = [_unpaired(body, n % 5) for n, body in enumerate(bodies[1:])]
    mixed = [b for pair in zip(bodies[1:], broken, strict=True) for b in pair]
    _same(bodies[:1] + mixed)
    fast, _ = _pair()
    for body in bodies[:3]:
        fast.process(copy.deepcopy(body))
    # an invalid round falls back (the Python path raises), having changed no cache entry
    entries = dict(fast._workspaces["sim"].entries)
    for how in range(5):
        with pytest.raises(APIErrorResponse) as caught:
            fast.process(_unpaired(bodies[3], how))
        assert caught.value.status == 400
    assert fast._workspaces["sim"].entries == entries


def _block(kind: str, n: int) -> dict[str, Any]:
    if kind == "tool_use":
        return {"type": "tool_use", "id": f"toolu_{n}", "name": "tool_0", "input": {"q": n}}
    if kind == "tool_result":
        return {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": f"result {n}"}
    if kind == "image":
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
        }
    if kind == "thinking":
        return {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    return {"type": "text", "text": f"{kind} {n} " + LONG[: 50 * (n % 7 + 1)]}


ccs = st.sampled_from(
    [None] * 12
    + [
        {"type": "ephemeral"},
        {"type": "ephemeral", "ttl": "1h"},
        {"type": "ephemeral", "ttl": "5m"},
        {"type": "persistent"},
        {"type": "ephemeral", "ttl": "2h"},
    ]
)
kinds = st.sampled_from(["text"] * 8 + ["tool_use", "tool_result"] * 2 + ["image", "thinking"])
messages_strategy = st.lists(
    st.tuples(st.booleans(), st.lists(st.tuples(kinds, ccs), min_size=0, max_size=3)),
    min_size=1,
    max_size=6,
)
appends = st.tuples(st.just("append"), messages_strategy)
edits = st.lists(
    st.one_of(
        appends,
        appends,
        appends,
        appends,
        st.tuples(st.just("agent"), st.tuples(st.integers(1, 3), st.integers(0, 9))),
        st.tuples(st.just("agent"), st.tuples(st.integers(1, 3), st.integers(0, 9))),
        st.tuples(st.just("truncate"), st.integers(1, 6)),
        st.tuples(st.just("clean"), st.none()),
        st.tuples(st.just("clean"), st.none()),
        st.tuples(st.just("edit"), st.integers(0, 20)),
        st.tuples(st.just("top"), ccs),
        st.tuples(st.just("system"), st.sampled_from(["a", "b", "", None])),
        st.tuples(st.just("tools"), st.integers(0, 2)),
        st.tuples(st.just("extra"), st.sampled_from(["temperature", "tool_choice", "speed"])),
        st.tuples(
            st.just("model"), st.sampled_from([MODEL, MODEL, "claude-nope", "claude-haiku-4-5"])
        ),
        st.tuples(st.just("wait"), st.sampled_from([10.0, 400.0, 4000.0])),
        st.tuples(st.just("key"), st.sampled_from(["sim", "other"])),
        st.tuples(st.just("max_tokens"), st.sampled_from([1, 20, 300, 0, -1])),
    ),
    min_size=1,
    max_size=20,
)


@needs_c
@settings(max_examples=60, deadline=None)
@given(edits)
def test_any_mix_of_requests_agrees_with_the_python_path(script: list[Any]) -> None:
    fast, slow = _pair()
    first = {"role": "user", "content": "Hello. " + LONG}
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 300, "messages": [first]}
    api_key = "sim"
    counter = 0
    for action, argument in script:
        if action == "append":
            for assistant, blocks in argument:
                counter += 1
                content: Any = []
                for kind, cc in blocks:
                    block = _block(kind, counter)
                    if cc is not None:
                        block["cache_control"] = cc
                    content.append(block)
                if not content:
                    content = f"plain {counter} " + LONG[: 40 * (counter % 5 + 1)]
                role = "assistant" if assistant else "user"
                body["messages"].append({"role": role, "content": content})
        elif action == "agent":  # a tool round: valid, or broken one of five ways (how < 5)
            calls, how = argument
            counter += 1
            ids = [f"toolu_{counter}_{k}" for k in range(calls)]
            uses = [{"type": "tool_use", "id": i, "name": "tool_0", "input": {}} for i in ids]
            results = [{"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in ids]
            body["messages"].append(
                {"role": "assistant", "content": [_block("text", counter), *uses]}
            )
            body["messages"].append(
                {"role": "user", "content": [*results, _block("text", counter)]}
            )
            if how < 5:
                body = _unpaired(body, how)
        elif action == "clean":  # back to plain text without breakpoints
            for message in body["messages"]:
                if isinstance(message["content"], list):
                    message["content"] = [
                        {key: value for key, value in block.items() if key != "cache_control"}
                        for block in message["content"]
                        if block["type"] in ("text", "tool_use", "tool_result")
                    ] or "cleaned"
        elif action == "truncate":
            del body["messages"][argument:]
        elif action == "edit":
            if body["messages"]:
                message = body["messages"][argument % len(body["messages"])]
                message["content"] = f"edited {argument}"
        elif action == "top":
            if argument is None:
                body.pop("cache_control", None)
            else:
                body["cache_control"] = argument
        elif action == "system":
            if argument is None:
                body.pop("system", None)
            else:
                body["system"] = [
                    {"type": "text", "text": argument * 3000 or ""},
                ]
        elif action == "tools":
            body["tools"] = [
                {"name": f"t{i}", "description": LONG[:300], "input_schema": {"type": "object"}}
                for i in range(argument)
            ]
        elif action == "extra":
            if body.pop(argument, None) is None:
                value: Any = {"type": "auto"} if argument == "tool_choice" else 0.5
                body[argument] = "fast" if argument == "speed" else value
        elif action == "model":
            body["model"] = argument
        elif action == "wait":
            fast.clock.advance(argument)  # type: ignore[attr-defined]
            slow.clock.advance(argument)  # type: ignore[attr-defined]
            continue
        elif action == "key":
            api_key = argument
            continue
        elif action == "max_tokens":
            body["max_tokens"] = argument
        a = _answer(fast, copy.deepcopy(body), api_key)
        b = _answer(slow, copy.deepcopy(body), api_key)
        assert a == b
    assert _state(fast) == _state(slow)


@needs_c
def test_a_responder_concurrency_or_a_custom_clock_take_the_python_path() -> None:
    bodies = _conversation(4)

    class Clock:
        def now(self) -> float:
            return START

    for sim in (
        Simulator(clock=VirtualClock(start=START), responder=lambda body: "hi"),
        Simulator(clock=Clock()),  # type: ignore[arg-type]
    ):
        assert _fast_requests(sim, bodies) == 0
    sim = Simulator(clock=VirtualClock(start=START))
    sim.handle_messages(bodies[0])
    with sim.concurrently():
        assert _fast_requests(sim, bodies[1:]) == 0
    assert _fast_requests(sim, bodies[1:]) == len(bodies) - 1


@needs_c
def test_changed_settings_are_picked_up() -> None:
    bodies = _conversation(6)
    fast, slow = _pair()
    for n, body in enumerate(bodies):
        if n == 3:
            for sim in (fast, slow):
                sim.settings = type(sim.settings).from_kwargs({"refresh": "hit", "lookback": 1})
        assert _answer(fast, body) == _answer(slow, body)
    assert _state(fast) == _state(slow)


@needs_c
def test_hostile_state_falls_back_or_raises_never_crashes() -> None:
    sim = Simulator(clock=VirtualClock(start=START))
    body = _conversation(2)[1]
    sim.handle_messages(_conversation(2)[0])
    sim.handle_messages(body)
    assert C.handle(sim, [], "sim") is None  # not a dict body
    assert C.handle(sim, body, 1) is None  # not a str key
    config = sim._fast_config
    assert config is not None
    for index, bad in ((3, []), (17, 5), (19, (1,) * 12), (16, 7), (4, None)):
        sim._fast_config = (*config[:index], bad, *config[index + 1 :])
        assert C.handle(sim, body, "sim") is None
    sim._fast_config = config[:5]
    assert C.handle(sim, body, "sim") is None
    sim._fast_config = config
    with pytest.raises(TypeError):
        C.handle(sim, body)
    with pytest.raises(AttributeError):
        C.handle(object(), body, "sim")
    # the answer is still the Python path's
    slow = Simulator(clock=VirtualClock(start=START))
    slow._native = None
    for b in _conversation(2):
        slow.handle_messages(b)
    sim.clock = slow.clock = VirtualClock(start=START + 10)
    a = sim.handle_messages(body)
    b = slow.handle_messages(body)
    assert a["usage"] == b["usage"]
