"""The layered prompt model: `Layer`, `Prompt`, and rendering to Messages API params.

A prompt is declared as layers that change at different rates: a `stable` prefix (personality,
instructions), a per-`conversation` layer (memories, retrieved facts) and a `dynamic` layer that
changes on every call (the time, the weather) and is never cached. `Prompt.render` turns the layers
plus the conversation into keyword arguments for `anthropic.Anthropic().messages.create`, with a
`cache_control` breakpoint at the end of each cached layer and a rolling breakpoint on the newest
turn, so each call reads everything before it from the cache.

Rules of the API enforced here (spec §1.3-§1.6): at most 4 breakpoints; a 1h breakpoint never after
a 5m one in tools → system → messages order; no breakpoint on an empty text block (empty layers are
left out of the request, with their breakpoint). Violations raise `PromptError` subclasses that name
the layer and say how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cachescope._errors import (
    DuplicateLayerError,
    InvalidLayerError,
    InvalidTTLError,
    PromptError,
    TooManyBreakpointsError,
    TTLOrderError,
)
from cachescope.blocks import LayeredBlocks

TTL = Literal["5m", "1h"]
MAX_BREAKPOINTS = 4
VALID_TTLS: tuple[str, ...] = ("5m", "1h")

#: Default TTL of the three layers of the three-layer design; any other name is a custom
#: system layer, cached for 5 minutes unless told otherwise.
LAYER_DEFAULT_TTLS: dict[str, str | None] = {"stable": "5m", "conversation": "5m", "dynamic": None}
CUSTOM_LAYER_TTL = "5m"

#: Names that would be confused with other parts of a request.
RESERVED_NAMES = frozenset({"tools", "user", "assistant", "history", "messages", "system"})
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

_DEFAULT = object()  # marks "ttl not given": the layer name decides


def normalize_ttl(ttl: object, *, where: str) -> str | None:
    """Return "5m", "1h" or None for a TTL given as such (or "none"), else raise `InvalidTTLError`."""
    if ttl is None:
        return None
    if isinstance(ttl, str):
        lowered = ttl.strip().lower()
        if lowered in VALID_TTLS:
            return lowered
        if lowered in ("none", "off", "no"):
            return None
    raise InvalidTTLError(
        f"{where}: unknown TTL {ttl!r}.",
        layer=where,
        hint='Use ttl="5m", ttl="1h", or ttl=None for a layer that is never cached.',
    )


@dataclass(frozen=True, init=False)
class Layer:
    """One layer of a prompt: a named piece of the system prompt with its cache lifetime.

    Parameters
    ----------
    name:
        `stable`, `conversation` and `dynamic` are the layers of the three-layer design (cached 5
        minutes, cached 5 minutes, never cached). Any other name is a custom system layer, cached
        for 5 minutes unless `ttl` says otherwise.
    text:
        The layer's text. An empty layer is left out of the request, with its breakpoint.
    ttl:
        "5m", "1h", or None for a layer that is never cached. Defaults by name as above.
    """

    name: str
    text: str
    ttl: str | None

    def __init__(self, name: str, text: str, ttl: object = _DEFAULT) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidLayerError(
                f"Layer name {name!r} is not a valid name.",
                layer=str(name),
                hint="Use letters, digits, '_', '-' or '.', starting with a letter (e.g. 'stable').",
            )
        if name in RESERVED_NAMES:
            raise InvalidLayerError(
                f"Layer name {name!r} is reserved for another part of the request.",
                layer=name,
                hint="Pick another name, e.g. 'instructions' or 'memories'.",
            )
        if not isinstance(text, str):
            raise InvalidLayerError(
                f"Layer {name!r}: text must be a string, not {type(text).__name__}.",
                layer=name,
                hint="Convert it first, e.g. with str() or json.dumps().",
            )
        resolved = LAYER_DEFAULT_TTLS.get(name, CUSTOM_LAYER_TTL) if ttl is _DEFAULT else ttl
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "ttl", normalize_ttl(resolved, where=f"layer {name!r}"))

    @property
    def cached(self) -> bool:
        """Whether this layer ends with a `cache_control` breakpoint."""
        return self.ttl is not None

    @property
    def empty(self) -> bool:
        return self.text == ""

    def with_text(self, text: str) -> Layer:
        return Layer(self.name, text, self.ttl)

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"Layer({self.name!r}, {preview!r}, ttl={self.ttl!r})"


@dataclass(frozen=True)
class Breakpoint:
    """Where `render` puts a `cache_control` marker, in request order."""

    where: str  # "tools", a layer name, or "history"
    ttl: str
    path: str  # API-style location, e.g. "system.1" or "messages.3.content.1"


def _cache_control(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl}


def _strip_cache_control(block: Any) -> Any:
    if isinstance(block, Mapping) and "cache_control" in block:
        return {key: value for key, value in block.items() if key != "cache_control"}
    return block


def _content_blocks(content: Any, *, where: str) -> list[Any]:
    """A message's content as a list of blocks (a string becomes one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        return [_strip_cache_control(block) for block in content]
    raise PromptError(
        f"{where}: message content must be a string or a list of content blocks, "
        f"not {type(content).__name__}.",
        hint='Use {"role": "user", "content": "text"} or a list of blocks.',
    )


@dataclass(frozen=True, init=False)
class Prompt:
    """A prompt declared in layers, ready to render into Messages API params.

    Parameters
    ----------
    model:
        The model ID, e.g. "claude-sonnet-5".
    layers:
        The system prompt's layers in order. Names must be unique.
    tools:
        Tool definitions (a list of dicts). They come first in the cached prefix and are cached
        through the first breakpoint unless `tools_ttl` gives them a breakpoint of their own.
    tools_ttl:
        "5m" or "1h" to put a breakpoint on the last tool; None (default) for none.
    dynamic_placement:
        Where the `dynamic` layer goes. "user" (default): as the first text block of the newest user
        turn (after its tool results, if it has any), after the history, so the history stays
        cacheable. "system": at the end of the system
        prompt, where it breaks the cached history on every call (the classic mistake, kept so its
        cost can be shown).
    history_ttl:
        TTL of the rolling breakpoint on the newest turn. "auto" (default) uses the TTL of the last
        cached layer (or "5m"); None turns the rolling breakpoint off.
    """

    model: str
    layers: tuple[Layer, ...]
    tools: tuple[dict[str, Any], ...] | None
    tools_ttl: str | None
    dynamic_placement: str
    history_ttl: str | None
    _names: dict[str, int] = field(repr=False, compare=False)

    def __init__(
        self,
        model: str,
        layers: Sequence[Layer] | Iterable[Layer] = (),
        tools: Sequence[Mapping[str, Any]] | None = None,
        tools_ttl: str | None = None,
        dynamic_placement: Literal["user", "system"] = "user",
        history_ttl: str | None = "auto",
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise PromptError(
                "Prompt needs a model ID.", hint='Pass model="claude-sonnet-5" (or another model).'
            )
        layer_tuple = tuple(layers)
        names: dict[str, int] = {}
        for position, layer in enumerate(layer_tuple):
            if not isinstance(layer, Layer):
                raise InvalidLayerError(
                    f"layers[{position}] is a {type(layer).__name__}, not a Layer.",
                    hint='Wrap it: cachescope.Layer("stable", text).',
                )
            if layer.name in names:
                raise DuplicateLayerError(
                    f"Layer {layer.name!r} is declared twice (positions {names[layer.name]} and "
                    f"{position}).",
                    layer=layer.name,
                    hint="Give each layer a unique name, or merge the two texts into one layer.",
                )
            names[layer.name] = position
        if dynamic_placement not in ("user", "system"):
            raise PromptError(
                f"dynamic_placement must be 'user' or 'system', not {dynamic_placement!r}.",
                layer="dynamic",
                hint="'user' keeps the history cacheable; 'system' reproduces the classic mistake.",
            )
        tool_tuple = _validate_tools(tools)
        object.__setattr__(self, "model", model.strip())
        object.__setattr__(self, "layers", layer_tuple)
        object.__setattr__(self, "tools", tool_tuple)
        object.__setattr__(self, "tools_ttl", normalize_ttl(tools_ttl, where="tools"))
        object.__setattr__(self, "dynamic_placement", dynamic_placement)
        history = (
            history_ttl if history_ttl == "auto" else normalize_ttl(history_ttl, where="history")
        )
        object.__setattr__(self, "history_ttl", history)
        object.__setattr__(self, "_names", names)
        self.breakpoints()  # validate the breakpoint budget and TTL order now, not at send time

    # -- inspection ---------------------------------------------------------------------------

    def layer(self, name: str) -> Layer:
        """The layer called `name` (KeyError with the known names if there is none)."""
        try:
            return self.layers[self._names[name]]
        except KeyError:
            known = ", ".join(self._names) or "none"
            raise KeyError(f"No layer {name!r} in this prompt (layers: {known}).") from None

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def system_layers(self) -> list[Layer]:
        """Non-empty layers rendered into `system`, in request order."""
        ordered = [
            layer
            for layer in self.layers
            if not layer.empty
            and not (layer.name == "dynamic" and self.dynamic_placement == "user")
        ]
        if self.dynamic_placement == "system":
            # The dynamic layer goes last in the system prompt, after every cached layer.
            ordered.sort(key=lambda layer: layer.name == "dynamic")
        return ordered

    def dynamic_text(self) -> str:
        """The dynamic layer's text when it is placed in the user turn, else ''."""
        if self.dynamic_placement == "user" and "dynamic" in self._names:
            return self.layer("dynamic").text
        return ""

    def resolved_history_ttl(self) -> str | None:
        if self.history_ttl != "auto":
            return self.history_ttl
        ttls = [layer.ttl for layer in self.system_layers() if layer.ttl]
        return ttls[-1] if ttls else (self.tools_ttl or "5m")

    def breakpoints(self) -> list[Breakpoint]:
        """The breakpoints `render` will place, in request order (validated against the API)."""
        points: list[Breakpoint] = []
        if self.tools and self.tools_ttl:
            points.append(Breakpoint("tools", self.tools_ttl, f"tools.{len(self.tools) - 1}"))
        for index, layer in enumerate(self.system_layers()):
            if layer.ttl:
                points.append(Breakpoint(layer.name, layer.ttl, f"system.{index}"))
        history_ttl = self.resolved_history_ttl()
        if history_ttl:
            points.append(Breakpoint("history", history_ttl, "messages.-1"))
        _check_breakpoints(points)
        return points

    # -- changes ------------------------------------------------------------------------------

    def replace_layer(self, name: str, text: str, ttl: object = _DEFAULT) -> Prompt:
        """A copy with layer `name`'s text (and optionally TTL) replaced; adds it if missing."""
        layers = list(self.layers)
        if name in self._names:
            old = layers[self._names[name]]
            layers[self._names[name]] = Layer(name, text, old.ttl if ttl is _DEFAULT else ttl)
        else:
            layers.append(Layer(name, text, ttl))
        return self.evolve(layers=layers)

    def evolve(self, **changes: Any) -> Prompt:
        """A copy with constructor arguments replaced, e.g. `prompt.evolve(model="claude-opus-5")`."""
        arguments: dict[str, Any] = {
            "model": self.model,
            "layers": self.layers,
            "tools": self.tools,
            "tools_ttl": self.tools_ttl,
            "dynamic_placement": self.dynamic_placement,
            "history_ttl": self.history_ttl,
        }
        arguments.update(changes)
        return Prompt(**arguments)

    def lint(self, **options: Any) -> Any:
        """Cache-busters in this prompt, before any call: `cachescope.lint(self)`."""
        from cachescope.lint import lint

        return lint(self, **options)

    # -- rendering ----------------------------------------------------------------------------

    def render(
        self,
        messages: Sequence[Mapping[str, Any]] | None = None,
        user: str | Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int = 1024,
        **extra: Any,
    ) -> dict[str, Any]:
        """Keyword arguments for `anthropic.Anthropic().messages.create`.

        Parameters
        ----------
        messages:
            The conversation so far (earlier turns). Any `cache_control` in it is removed: the
            only breakpoint in the messages is the rolling one this method places.
        user:
            The new user turn (text or content blocks). Without it, the last message of
            `messages` must be a user turn and is treated as the newest one.
        max_tokens:
            Passed through (0 pre-warms the cache without output).
        **extra:
            Other `messages.create` arguments (`temperature`, `stream`, `metadata`, ...).

        The result's `system`, `tools` and message contents are `LayeredBlocks` lists that remember
        which layer each block came from, so `cachescope.fingerprint` can name it.
        """
        for key in ("model", "system", "tools", "messages"):
            if key in extra:
                raise PromptError(
                    f"render() got {key!r} in its extra arguments; it comes from the Prompt.",
                    hint=f"Change the Prompt instead (e.g. prompt.evolve({key}=...)).",
                )
        params: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens}
        points = {point.where: point for point in self.breakpoints()}

        if self.tools:
            tools = [dict(tool) for tool in self.tools]
            if "tools" in points:
                tools[-1]["cache_control"] = _cache_control(points["tools"].ttl)
            params["tools"] = LayeredBlocks(tools, ["tools"] * len(tools))

        system_blocks: list[dict[str, Any]] = []
        system_names: list[str | None] = []
        for layer in self.system_layers():
            block: dict[str, Any] = {"type": "text", "text": layer.text}
            if layer.ttl:
                block["cache_control"] = _cache_control(layer.ttl)
            system_blocks.append(block)
            system_names.append(layer.name)
        if system_blocks:
            params["system"] = LayeredBlocks(system_blocks, system_names)

        params["messages"] = self._render_messages(messages, user, points.get("history"))
        params.update(extra)
        return params

    def _render_messages(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        user: str | Sequence[Mapping[str, Any]] | None,
        rolling: Breakpoint | None,
    ) -> list[dict[str, Any]]:
        history = list(messages or [])
        if user is None:
            if (
                not history
                or not isinstance(history[-1], Mapping)
                or history[-1].get("role") != "user"
            ):
                raise PromptError(
                    "render() needs a new user turn: pass user=..., or end messages with a user turn.",
                    hint='e.g. prompt.render(user="What changed since yesterday?").',
                )
            newest_source: Any = history.pop()["content"]
        else:
            newest_source = user
        rendered: list[dict[str, Any]] = []
        for number, message in enumerate(history):
            if (
                not isinstance(message, Mapping)
                or "role" not in message
                or "content" not in message
            ):
                raise PromptError(
                    f"messages[{number}] must be a dict with 'role' and 'content'.",
                    hint='e.g. {"role": "assistant", "content": "..."}.',
                )
            content = _content_blocks(message["content"], where=f"messages[{number}]")
            rendered.append(
                {
                    **{k: v for k, v in message.items() if k != "content"},
                    "content": LayeredBlocks(content, ["history"] * len(content)),
                }
            )

        newest = _content_blocks(newest_source, where="the new user turn")
        if not any(not _is_empty_text(block) for block in newest):
            raise PromptError(
                "The new user turn is empty; the API rejects empty text blocks.",
                layer="user",
                hint="Write a question or instruction for the user turn.",
            )
        newest = [block for block in newest if not _is_empty_text(block)]
        names: list[str | None] = ["user"] * len(newest)
        dynamic = self.dynamic_text()
        if dynamic:
            # First text block of the turn, but after any tool_result blocks: the API requires a
            # turn that answers tool calls to start with its tool results.
            at = 0
            while at < len(newest) and _is_tool_result(newest[at]):
                at += 1
            newest.insert(at, {"type": "text", "text": dynamic})
            names.insert(at, "dynamic")
        if rolling is not None:
            newest[-1] = {**newest[-1], "cache_control": _cache_control(rolling.ttl)}
        rendered.append({"role": "user", "content": LayeredBlocks(newest, names)})
        return rendered


def _is_tool_result(block: Any) -> bool:
    return isinstance(block, Mapping) and block.get("type") == "tool_result"


def _is_empty_text(block: Any) -> bool:
    return isinstance(block, Mapping) and block.get("type") == "text" and not block.get("text")


def _validate_tools(tools: Sequence[Mapping[str, Any]] | None) -> tuple[dict[str, Any], ...] | None:
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable):
        raise InvalidLayerError(
            f"tools must be a list of tool definitions, not {type(tools).__name__}.",
            layer="tools",
            hint='e.g. tools=[{"name": "search", "description": "...", "input_schema": {...}}].',
        )
    result: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidLayerError(
                f"tools[{index}] is a {type(tool).__name__}, not a tool definition object.",
                layer="tools",
                hint='Each tool is a dict like {"name": ..., "input_schema": {...}}.',
            )
        if "name" not in tool and "type" not in tool:
            raise InvalidLayerError(
                f"tools[{index}] has neither 'name' nor 'type'.",
                layer="tools",
                hint="A custom tool needs a 'name' (and an 'input_schema').",
            )
        result.append({key: value for key, value in tool.items() if key != "cache_control"})
    return tuple(result) if result else None


def _check_breakpoints(points: Sequence[Breakpoint]) -> None:
    if len(points) > MAX_BREAKPOINTS:
        where = ", ".join(point.where for point in points)
        raise TooManyBreakpointsError(
            f"This prompt needs {len(points)} cache breakpoints ({where}); the API allows "
            f"{MAX_BREAKPOINTS}.",
            layer=points[-1].where,
            hint="Merge layers that change at the same rate into one, set ttl=None on a layer "
            "that need not end a cached section, or pass history_ttl=None.",
        )
    seen_5m: Breakpoint | None = None
    for point in points:
        if point.ttl == "5m" and seen_5m is None:
            seen_5m = point
        elif point.ttl == "1h" and seen_5m is not None:
            raise TTLOrderError(
                f"{point.where!r} has a 1h breakpoint after the 5m breakpoint of "
                f"{seen_5m.where!r}; the API requires 1h entries before 5m ones "
                "(order: tools, system, messages).",
                layer=point.where,
                hint=f"Give {point.where!r} ttl='5m', or {seen_5m.where!r} ttl='1h', or move "
                f"{point.where!r} before {seen_5m.where!r}.",
            )
