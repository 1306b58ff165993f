"""Exceptions and warnings a user can cause.

Every error here is the user's to fix, so each message says what was wrong, where (layer, line,
column) and how to fix it. In a notebook the magics show them without a traceback. Errors that a user
cannot cause are bugs and are left to raise as ordinary Python exceptions.
"""

from __future__ import annotations


class CachescopeError(Exception):
    """Base class of every error cachescope raises on purpose."""


class CachescopeWarning(UserWarning):
    """Base class of cachescope's warnings (the test-suite turns them into errors)."""


class UnknownModelWarning(CachescopeWarning):
    """A model has no known price or model data; its cost is reported as unknown, never $0."""


class PromptError(CachescopeError, ValueError):
    """A layered prompt breaks one of the Messages API's caching rules.

    Attributes
    ----------
    layer:
        The layer the problem is in, when there is one.
    hint:
        One sentence on how to fix it (also part of the message).
    """

    def __init__(self, message: str, *, layer: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.layer = layer
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class TooManyBreakpointsError(PromptError):
    """More than the API's 4 `cache_control` breakpoints would be sent."""


class TTLOrderError(PromptError):
    """A 1h breakpoint comes after a 5m one (tools → system → messages order)."""


class InvalidTTLError(PromptError):
    """A TTL other than "5m", "1h" or None."""


class DuplicateLayerError(PromptError):
    """Two layers share a name."""


class InvalidLayerError(PromptError):
    """A layer or tool list is malformed (wrong type, bad name, not a list of tool objects)."""


class CellSyntaxError(CachescopeError, ValueError):
    """A `%%cached_prompt` cell body could not be parsed.

    Attributes
    ----------
    line:
        1-based line number inside the cell body (0 when the problem is not on one line).
    text:
        The offending line, as written.
    fix:
        One sentence on how to fix it.
    """

    def __init__(self, message: str, *, line: int, text: str = "", fix: str = "") -> None:
        self.message = message
        self.line = line
        self.text = text
        self.fix = fix
        where = f"line {line}: " if line else ""
        shown = f"\n    {text}" if text else ""
        tail = f"\n{fix}" if fix else ""
        super().__init__(f"{where}{message}{shown}{tail}")
