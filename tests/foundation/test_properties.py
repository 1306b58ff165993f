"""Property tests: parse never fails with anything but CellSyntaxError; render obeys the API rules."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cachescope as cs
from cachescope import syntax
from cachescope.blocks import flatten

HEADERS = [
    "@tools",
    "@stable",
    "@conversation",
    "@dynamic",
    "@system x",
    "@system y",
    "@user",
    "@assistant",
    "@@user",
    "@stable ttl=1h",
    "@stable ttl=5m",
    "@dynamic ttl=none",
    "@conversation ttl=1h",
    "@tools ttl=5m",
    "@stable bogus=1",
    "@system",
    "@user hi there",
]
LINES = st.one_of(
    st.sampled_from(HEADERS),
    st.text(max_size=40),
    st.sampled_from(
        ["{{ x }}", "{{ missing }}", "{{", "}}", "{% if %}", '[{"name": "a"}]', "{x}", ""]
    ),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(LINES, max_size=14))
def test_parse_returns_a_cell_or_raises_cell_syntax_error(lines: list[str]) -> None:
    body = "\n".join(lines)
    try:
        cell = syntax.parse(body, {"x": "value"})
    except cs.CellSyntaxError as error:
        assert error.line >= 0
    else:
        assert isinstance(cell, syntax.Cell)
        assert cell.user.strip()


TTLS = st.sampled_from(["5m", "1h", None])
LAYER_TEXT = st.text(max_size=30)


@st.composite
def prompts(draw: st.DrawFn) -> cs.Prompt | None:
    names = draw(
        st.lists(
            st.sampled_from(["stable", "conversation", "dynamic", "rag", "notes"]),
            unique=True,
            max_size=5,
        )
    )
    layers = [cs.Layer(name, draw(LAYER_TEXT), draw(TTLS)) for name in names]
    tools = draw(st.sampled_from([None, [{"name": "t", "input_schema": {}}]]))
    try:
        return cs.Prompt(
            "claude-sonnet-5",
            layers,
            tools=tools,
            tools_ttl=draw(TTLS),
            dynamic_placement=draw(st.sampled_from(["user", "system"])),
            history_ttl=draw(st.sampled_from(["auto", "5m", "1h", None])),
        )
    except cs.PromptError:
        return None


@settings(max_examples=300, deadline=None)
@given(prompts(), st.text(min_size=1, max_size=20).filter(str.strip))
def test_render_always_satisfies_the_api_rules(prompt: cs.Prompt | None, user: str) -> None:
    if prompt is None:
        return
    params = prompt.render(user=user)
    blocks = flatten(params).blocks
    marked = [block for block in blocks if block.cache_control]
    assert len(marked) <= 4
    ttls = [block.ttl for block in marked]
    assert "1h" not in ttls[ttls.index("5m") :] if "5m" in ttls else True
    assert all(block.text for block in marked if block.kind == "text")
    for block in params.get("system", []):
        assert block["text"]
