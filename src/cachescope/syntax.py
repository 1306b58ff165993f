"""The `%%cached_prompt` cell body: a small, forgiving syntax for layered prompts.

    @tools ttl=1h
    {{ tools }}
    @stable ttl=1h
    You are Aura. {{ personality }}
    @conversation
    {{ memories }}
    @dynamic
    Current time: {{ now }}
    @user
    What changed since yesterday?

A header is a line that starts with `@` followed by a known kind (`tools`, `stable`,
`conversation`, `dynamic`, `system NAME`, `user`, `assistant`) and nothing but `key=value` options
(only `ttl=5m|1h|none` is known). Every other line is content, so Markdown headings, `@decorators`,
e-mail addresses, `{ json }` and `@user mentions` in prose stay content. `@@` at the start of a line
is a literal `@`.

`{{ expr }}` is templated with Jinja2 over the given namespace, exactly once, after the structure is
parsed (a value can never inject a header). Undefined names are errors. Only `{{ }}` is active:
`{% %}`, `{# #}` and single braces are left as written. Several `@user`/`@assistant` sections form
a conversation: the last `@user` is the new turn, an `@assistant` after it is a prefill.

This module knows nothing about IPython; errors are `CellSyntaxError` with the cell line number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import orjson

from cachescope._errors import CellSyntaxError, PromptError
from cachescope.prompt import Layer, Prompt, normalize_ttl

LAYER_KINDS = ("stable", "conversation", "dynamic")
KINDS = ("tools", *LAYER_KINDS, "system", "user", "assistant")
KNOWN_OPTIONS = {"ttl"}

_HEADER_RE = re.compile(
    r"^@(?P<kind>tools|stable|conversation|dynamic|system|user|assistant)"
    r"(?P<rest>(?:[ \t]+\S+)*)[ \t]*$"
)
_OPTION_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_-]*)=(?P<value>\S*)$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_EXPRESSION_ONLY_RE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)

# Only {{ expr }} is active. Statement and comment markers are set to strings a prompt cannot
# contain (they start with NUL), so `{% raw %}` or `{#` in a prompt about Jinja stay literal.
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    block_start_string="\x00{%",
    block_end_string="%}\x00",
    comment_start_string="\x00{#",
    comment_end_string="#}\x00",
    line_statement_prefix=None,
    line_comment_prefix=None,
)


@dataclass
class Section:
    """One header and its content lines, before templating."""

    kind: str
    name: str
    options: dict[str, str]
    header_line: int  # 1-based line of the header
    lines: list[str] = field(default_factory=list)

    @property
    def first_content_line(self) -> int:
        return self.header_line + 1


@dataclass
class Cell:
    """A parsed `%%cached_prompt` cell.

    Attributes
    ----------
    prompt:
        The layered `Prompt` (tools and system layers).
    user:
        The new user turn's text.
    prefill:
        Text of an `@assistant` section after the last `@user` (the reply's start), or None.
    messages:
        Earlier turns given in the cell (alternating `@user`/`@assistant` before the last user).
    options:
        Header options per section name, e.g. `{"stable": {"ttl": "1h"}}`.
    lines:
        Cell line number where each section's content starts, e.g. `{"stable": 4, "user": 10}`.
    text_lines:
        Cell line of the first line of each layer's text as sent (after leading blank lines are
        dropped), for the layers whose templating kept every line where it was; `cell_line`
        uses it to point lint findings into the cell.
    """

    prompt: Prompt
    user: str
    prefill: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    text_lines: dict[str, int] = field(default_factory=dict)

    def cell_line(self, layer: str | None, line: int) -> int | None:
        """The cell line of line `line` (1-based) of `layer`'s text, or None when unknown.

        Unknown means: not a layer of this cell, no line (layout findings have line 0), or a
        `{{ }}` expression in the layer that added or removed lines, so the layer's lines no
        longer sit where the cell has them.
        """
        start = self.text_lines.get(layer or "")
        if start is None or line < 1:
            return None
        return start + line - 1

    def render(self, history: list[dict[str, Any]] | None = None, **kwargs: Any) -> dict[str, Any]:
        """`messages.create` kwargs for this cell, after `history` and the cell's own turns."""
        messages = [*(history or []), *self.messages]
        params = self.prompt.render(messages=messages, user=self.user, **kwargs)
        if self.prefill:
            params["messages"].append({"role": "assistant", "content": self.prefill})
        return params


def _content_before_header(number: int, raw: str) -> CellSyntaxError:
    return CellSyntaxError(
        "content before the first header.",
        line=number,
        text=raw,
        fix="Start the cell with a header such as '@stable' or '@user'; "
        "to begin a line with '@', write '@@'.",
    )


def _split(text: str) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        match = _HEADER_RE.match(raw)
        if match is None:
            line = raw[1:] if raw.startswith("@@") else raw
            if not sections:
                if line.strip():
                    raise _content_before_header(number, raw)
                continue
            sections[-1].lines.append(line)
            continue
        section = _parse_header(match, number, raw)
        if section is None:  # known kind followed by prose: content, e.g. "@user please ..."
            if not sections:
                raise _content_before_header(number, raw)
            sections[-1].lines.append(raw)
            continue
        sections.append(section)
    return sections


def _parse_header(match: re.Match[str], number: int, raw: str) -> Section | None:
    kind = match.group("kind")
    words = match.group("rest").split()
    name = kind
    if kind == "system":
        if not words or "=" in words[0]:
            raise CellSyntaxError(
                "'@system' needs a layer name.",
                line=number,
                text=raw,
                fix="Write '@system NAME', e.g. '@system instructions ttl=1h'.",
            )
        name = words.pop(0)
        if not _NAME_RE.match(name):
            raise CellSyntaxError(
                f"{name!r} is not a valid layer name.",
                line=number,
                text=raw,
                fix="Use letters, digits, '_', '-' or '.', starting with a letter.",
            )
    options: dict[str, str] = {}
    for word in words:
        option = _OPTION_RE.match(word)
        if option is None:
            if kind == "system" or options:
                raise CellSyntaxError(
                    f"cannot read {word!r} in the header.",
                    line=number,
                    text=raw,
                    fix="Headers take options as key=value (only ttl=5m|1h|none is known).",
                )
            return None
        key, value = option.group("key"), option.group("value")
        if key not in KNOWN_OPTIONS:
            raise CellSyntaxError(
                f"unknown header option {key!r}.",
                line=number,
                text=raw,
                fix="The only header option is ttl=5m|1h|none.",
            )
        if key in options:
            raise CellSyntaxError(
                f"option {key!r} is given twice.",
                line=number,
                text=raw,
                fix=f"Keep one {key}=... on the header.",
            )
        options[key] = value
    if "ttl" in options:
        if kind in ("user", "assistant"):
            raise CellSyntaxError(
                f"'@{kind}' takes no ttl.",
                line=number,
                text=raw,
                fix="The newest turn always gets the rolling breakpoint; remove ttl=.",
            )
        try:
            normalize_ttl(options["ttl"], where=name)
        except PromptError:
            raise CellSyntaxError(
                f"bad TTL {options['ttl']!r}.",
                line=number,
                text=raw,
                fix="Use ttl=5m, ttl=1h or ttl=none.",
            ) from None
    return Section(kind=kind, name=name, options=options, header_line=number)


def _render_text(section: Section, namespace: Mapping[str, Any]) -> str:
    text = "\n".join(section.lines).strip("\n")
    if "{{" not in text:
        return text
    try:
        return _ENV.from_string(text).render(namespace)
    except jinja2.TemplateSyntaxError as error:
        line = section.header_line + _leading_blank_lines(section) + (error.lineno or 1)
        raise CellSyntaxError(
            f"template error: {error.message}.",
            line=line,
            text=_line_at(section, line),
            fix="Check the {{ ... }} expression; to write literal braces use {{ '{{' }}.",
        ) from None
    except Exception as error:
        raise _evaluation_error(section, namespace, error) from None


def _text_start(section: Section, rendered: str) -> int | None:
    """Cell line of the first line of `rendered` (the section's text as sent), when exact."""
    raw = "\n".join(section.lines).strip("\n")
    if rendered.count("\n") != raw.count("\n") or _SPANNING_EXPRESSION.search(raw):
        return None
    return section.first_content_line + _leading_blank_lines(section)


# A `{{ ... }}` expression written over several lines: its output may have as many lines or not.
_SPANNING_EXPRESSION = re.compile(r"\{\{[^}]*\n")


def _leading_blank_lines(section: Section) -> int:
    count = 0
    for line in section.lines:
        if line.strip():
            break
        count += 1
    return count


def _failing_line(section: Section, namespace: Mapping[str, Any]) -> int:
    """The first line of the section whose {{ }} expressions fail on their own."""
    for offset, line in enumerate(section.lines, start=1):
        if "{{" not in line:
            continue
        try:
            _ENV.from_string(line).render(namespace)
        except Exception:
            return section.header_line + offset
    return section.header_line


def _line_at(section: Section, line: int) -> str:
    index = line - section.header_line - 1
    return section.lines[index] if 0 <= index < len(section.lines) else ""


def _evaluation_error(
    section: Section, namespace: Mapping[str, Any], error: Exception
) -> CellSyntaxError:
    """The error for a {{ }} expression that failed while evaluating, at its line."""
    line = _failing_line(section, namespace)
    return CellSyntaxError(
        _describe_eval_error(error), line=line, text=_line_at(section, line), fix=_eval_fix(error)
    )


def _describe_eval_error(error: Exception) -> str:
    if isinstance(error, jinja2.UndefinedError):
        return f"undefined variable: {error.message}."
    return f"evaluating the template raised {type(error).__name__}: {error}."


def _eval_fix(error: Exception) -> str:
    if isinstance(error, jinja2.UndefinedError):
        return "Define it in the notebook before running the cell (or fix its spelling)."
    return "Fix the expression inside {{ ... }}."


def _tools(section: Section, namespace: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = "\n".join(section.lines).strip()
    value: Any
    if not raw:
        return []
    only = _EXPRESSION_ONLY_RE.match(raw)
    if only is not None:
        try:
            value = _ENV.compile_expression(only.group("expr").strip(), undefined_to_none=False)(
                **namespace
            )
        except Exception as error:
            raise _evaluation_error(section, namespace, error) from None
        if isinstance(value, jinja2.Undefined):
            raise CellSyntaxError(
                "undefined variable in @tools.",
                line=section.first_content_line,
                text=raw,
                fix="Define the tool list in the notebook before running the cell.",
            )
        if isinstance(value, (str, bytes)):
            value = _load_json(value, section)
    else:
        value = _load_json(_render_text(section, namespace), section)
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(tool, Mapping) for tool in value):
        raise CellSyntaxError(
            f"@tools must be a list of tool objects, got {type(value).__name__}.",
            line=section.first_content_line,
            text=_line_at(section, section.first_content_line),
            fix='Write a JSON list like [{"name": "search", "input_schema": {...}}] or {{ tools }}.',
        )
    return [dict(tool) for tool in value]


def _load_json(text: str | bytes, section: Section) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise CellSyntaxError(
            f"@tools is not valid JSON ({error}).",
            line=section.first_content_line,
            text=_line_at(section, section.first_content_line),
            fix="Write the tool list as JSON, or as {{ name }} of a list defined in the notebook.",
        ) from None


def parse(
    text: str,
    namespace: Mapping[str, Any] | None = None,
    *,
    model: str | None = None,
    default_ttl: str | None = None,
    dynamic_placement: str = "user",
) -> Cell:
    """Parse a `%%cached_prompt` cell body into a `Cell`.

    Parameters
    ----------
    text:
        The cell body.
    namespace:
        Names available to `{{ expr }}` (in a notebook, the user namespace).
    model:
        Model for the prompt; defaults to the data table's default model.
    default_ttl:
        TTL for cached layers whose header gives none ("5m" or "1h"; `--ttl` in the magic).
    dynamic_placement:
        Passed to `Prompt`.

    Raises
    ------
    CellSyntaxError
        With the 1-based line number inside the cell, the line, and how to fix it.
    """
    if not isinstance(text, str):
        raise CellSyntaxError("the cell body must be text.", line=0)
    namespace = namespace or {}
    sections = _split(text)
    if not sections:
        raise CellSyntaxError(
            "the cell is empty.",
            line=0,
            fix="Write at least a '@user' section with a question.",
        )
    if model is None:
        from cachescope._modeldata import default_table

        model = default_table().default_model

    layers: list[Layer] = []
    tools: list[dict[str, Any]] | None = None
    tools_ttl: str | None = None
    turns: list[tuple[Section, str]] = []
    seen: dict[str, Section] = {}
    options: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    text_lines: dict[str, int] = {}
    for section in sections:
        if section.kind not in ("user", "assistant"):
            if section.name in seen:
                raise CellSyntaxError(
                    f"section '@{section.name}' appears twice (first on line "
                    f"{seen[section.name].header_line}).",
                    line=section.header_line,
                    text=f"@{section.kind}"
                    + (f" {section.name}" if section.kind == "system" else ""),
                    fix="Merge the two sections into one.",
                )
            seen[section.name] = section
            options[section.name] = dict(section.options)
            lines[section.name] = section.first_content_line
        if section.kind == "tools":
            tools = _tools(section, namespace)
            tools_ttl = section.options.get("ttl")
        elif section.kind in ("user", "assistant"):
            turns.append((section, _render_text(section, namespace)))
        else:
            content = _render_text(section, namespace)
            start = _text_start(section, content)
            if start is not None:
                text_lines[section.name] = start
            if "ttl" in section.options:
                layers.append(Layer(section.name, content, section.options["ttl"]))
            elif default_ttl is not None and section.name != "dynamic":
                layers.append(Layer(section.name, content, default_ttl))
            else:
                layers.append(Layer(section.name, content))

    user_sections = [i for i, (section, _) in enumerate(turns) if section.kind == "user"]
    if not user_sections:
        raise CellSyntaxError(
            "no '@user' section: there is nothing to send.",
            line=len(text.splitlines()),
            fix="Add a '@user' header followed by the question.",
        )
    last_user = user_sections[-1]
    user_section, user_text = turns[last_user]
    if not user_text.strip():
        raise CellSyntaxError(
            "the '@user' section is empty.",
            line=user_section.header_line,
            text="@user",
            fix="Write the question under '@user'.",
        )
    lines["user"] = user_section.first_content_line
    after = turns[last_user + 1 :]
    if len(after) > 1:
        raise CellSyntaxError(
            "only one '@assistant' section (a prefill) may follow the last '@user'.",
            line=after[1][0].header_line,
            text="@assistant",
            fix="Remove the extra sections, or add a '@user' turn between them.",
        )
    prefill = after[0][1] if after else None
    messages: list[dict[str, Any]] = []
    for section, content in turns[:last_user]:
        if not content.strip():
            raise CellSyntaxError(
                f"the '@{section.kind}' section is empty.",
                line=section.header_line,
                text=f"@{section.kind}",
                fix="Write its text, or remove the section.",
            )
        messages.append({"role": section.kind, "content": content})

    try:
        prompt = Prompt(
            model=model,
            layers=layers,
            tools=tools or None,
            tools_ttl=tools_ttl,
            dynamic_placement=dynamic_placement,  # type: ignore[arg-type]
        )
    except PromptError as error:
        where = seen.get(error.layer or "")
        if where is None and seen:
            # e.g. the rolling "history" breakpoint tipped the budget: point at the last layer.
            where = list(seen.values())[-1]
        line = where.header_line if where else 0
        raise CellSyntaxError(
            error.message,
            line=line,
            text=f"@{where.kind}" + (f" {where.name}" if where and where.kind == "system" else "")
            if where
            else "",
            fix=error.hint or "",
        ) from None
    return Cell(
        prompt=prompt,
        user=user_text,
        prefill=prefill,
        messages=messages,
        options=options,
        lines=lines,
        text_lines=text_lines,
    )
