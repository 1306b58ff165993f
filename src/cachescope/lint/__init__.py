"""Lint: cache-busters in the cached part of a prompt, found before any call is made.

`lint(x)` takes a `Prompt`, request params (`messages.create` kwargs), a plain string (read as a
cached system prompt) or a callable that builds one of those, and returns `Findings`: each names
the rule, the layer, the line and column span inside the block and the fix in one sentence. The
rules are data, in `cachescope.lint.rules`. `lint` never raises on odd input: what it cannot
read it skips.

This module is callable itself, `cachescope.lint(x)`, whichever of the function or the module
`cachescope.lint` names (that depends on what was imported first).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

from cachescope.lint._findings import Finding, Findings
from cachescope.lint._kinds import ChangeRule, Hit, RequestRule, TextRule
from cachescope.lint._layout import UNREADABLE, Request
from cachescope.lint._scan import Scanner
from cachescope.lint.rules import CHANGE_RULES, REQUEST_RULES, RULES, TEXT_RULES

__all__ = ["RULES", "ChangeRule", "Finding", "Findings", "RequestRule", "TextRule", "lint"]

_SCANNER = Scanner(TEXT_RULES)


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
        A `cachescope.Prompt`, request params (`messages.create` kwargs), a plain string (read
        as a cached system prompt), or a callable without arguments that returns one of those
        (it is called once).
    previous:
        The previous render of the same prompt (params or Prompt). With it, `lint` also reports
        JSON whose key order changed, re-ordered tools, breakpoints on blocks that changed and
        any other cached value that changed (`prefix_changed`).
    model:
        Model ID for the minimum-length check; by default the request's model.

    Text is scanned where it is re-sent on every call: tools and system, up to the last
    breakpoint. The conversation is append-only, so a date in an earlier turn is not a buster;
    with `previous`, an edited turn is reported as `prefix_changed`. Layout checks (minimum
    length, lookback, TTL order, dynamic placement) cover the whole request. Returns a `Findings`
    list, empty when all is well.
    """
    out = Findings()
    try:
        _lint_into(_built(prompt_or_params), previous, model, out)
    except RecursionError:  # absurdly nested input: report what was found so far
        pass
    return out


def _built(value: Any) -> Any:
    """What a build callable returns (a Prompt, params or text); anything else as it is."""
    if (
        callable(value)
        and not isinstance(value, (type, Mapping, str))
        and not hasattr(value, "render")
    ):
        return value()
    return value


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


def _lint_into(value: Any, previous: Any, model: str | None, out: Findings) -> None:
    if isinstance(value, str):
        value = {"model": model or "", "system": [{"type": "text", "text": value}]}
    params, prompt = _params_of(value)
    if params is None:
        for layer in getattr(prompt, "layers", ()):
            text = getattr(layer, "text", "")
            if isinstance(text, str) and getattr(layer, "ttl", None):
                _SCANNER.scan(text, getattr(layer, "name", None), "system", out)
        return
    try:
        request = Request.read(params, model)
    except UNREADABLE:
        # not a request the API would accept: still look at whatever text it holds
        for path, text in _strings(params, "request", 0):
            _SCANNER.scan(text, None, path, out)
        return
    for block in request.blocks[: request.scope + 1]:
        # The conversation is append-only: a date in an earlier turn (or the newest one, where
        # the dynamic layer belongs) is sent once and read back unchanged, so it busts nothing.
        # Edited history is caught against `previous` (prefix_changed).
        if block.layer == "dynamic" or block.level == "messages":
            continue
        _SCANNER.scan(block.text, block.layer or block.path, block.path, out)
    for rule in REQUEST_RULES:
        out.extend(_findings(rule, rule.check(request)))
    old_params = _params_of(_built(previous))[0] if previous is not None else None
    if old_params is None:
        return
    try:
        old = Request.read(old_params)
    except UNREADABLE:
        return
    for change in CHANGE_RULES:
        out.extend(_findings(change, change.check(request, old, out)))


def _findings(rule: RequestRule | ChangeRule, hits: Iterable[Hit]) -> list[Finding]:
    return [
        Finding(
            rule.id,
            rule.severity,
            hit.layer,
            hit.line,
            hit.column,
            hit.end_column,
            hit.text,
            rule.fix.format_map(hit.details) if hit.details else rule.fix,
            hit.path,
        )
        for hit in hits
    ]


class _CallableModule(types.ModuleType):
    """`cachescope.lint` the module, callable as `cachescope.lint` the function."""

    def __call__(
        self, prompt_or_params: Any, *, previous: Any = None, model: str | None = None
    ) -> Findings:
        return lint(prompt_or_params, previous=previous, model=model)


sys.modules[__name__].__class__ = _CallableModule
