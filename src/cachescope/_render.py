"""The one place objects render both ways: `text/plain` and escaped `text/html` for IPython."""

from __future__ import annotations

from collections.abc import Iterable


def mimebundle(
    text: str, html: str, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> dict[str, str]:
    """A `_repr_mimebundle_` result with both forms, honouring IPython's `include`/`exclude`."""
    bundle = {"text/plain": text, "text/html": html}
    if include is not None:
        wanted = set(include)
        bundle = {key: value for key, value in bundle.items() if key in wanted}
    if exclude is not None:
        unwanted = set(exclude)
        bundle = {key: value for key, value in bundle.items() if key not in unwanted}
    return bundle
