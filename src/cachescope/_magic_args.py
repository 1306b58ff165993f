"""Argument types for `%%cached_prompt`'s options: an option given once, identifiers, counts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class Once(argparse.Action):
    """Store an option's value, refusing the option (or its opposite) a second time."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.flag_value = kwargs.pop("flag_value", None)
        if self.flag_value is not None:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        seen: dict[str, str] = namespace.__dict__.setdefault("_seen", {})
        if self.dest in seen:
            first = seen[self.dest]
            if first == option_string:
                parser.error(f"option {option_string} is given twice; keep one.")
            parser.error(f"options {first} and {option_string} contradict each other; keep one.")
        seen[self.dest] = option_string or self.dest
        setattr(namespace, self.dest, self.flag_value if self.flag_value is not None else values)


def identifier(value: str) -> str:
    if not value.isidentifier():
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid Python variable name")
    return value


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is negative")
    return number
