"""Pure-Python twins of `cachescope._native.simcore` (the simulator core's hot loops).

Each function gives exactly what its C twin gives; `tests/sim/test_simcore_native.py` holds them
to it. `native()` returns the compiled module, or None when the pure path must be used.

- `struct_hash(value)`: a 16-byte digest (XXH3-128, canonical big-endian) of a parsed JSON
  value's structure — exact `dict` (key order matters), `list`, `str`, `int` (64-bit), `float`
  (bit pattern), `True`, `False`, `None`, each with its own tag, so `1`, `1.0` and `True` differ.
  Any other type (tuple, subclass, int beyond 64 bits, str with lone surrogates, non-str key)
  gives None. Equal digests mean equal JSON bytes (up to a 128-bit collision).
- `freeze(value)`: an immutable copy (lists as tuples, dicts as `(..., key, value, ...)` tuples,
  atoms as themselves) that `matches(frozen, value)` compares a later value against, exactly, with
  `struct_hash`'s strictness; ValueError where `struct_hash` gives None.
- `common(frozen_items, values)`: how many leading items of a list match frozen ones.
- `digest_count(text, seed, factor, chars_per_token, punct_weight, newline_weight,
  non_ascii_weight, punct)`: (xxh3-64 of the UTF-8 with `seed`, the token estimate of
  `cachescope.tokens.EstimatingCounter` with these constants), None without a UTF-8 form.

Two C functions have their twins elsewhere: `default_reply(seed, words)` is
`cachescope.sim._responder.default_reply`, and `handle(sim, body, api_key)` — the whole request
of the common shape in one call — is `Simulator._process`, the Python path it falls back to for
every other shape (`tests/sim/test_simcore_handle.py` holds them to the same answers and state).
"""

from __future__ import annotations

import math
import struct
from types import ModuleType
from typing import Any

import xxhash

_U64 = struct.Struct("<Q")
_MAX_DEPTH = 200


class _Unsupported(Exception):
    pass


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    kind = value.__class__
    if kind is str:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unsupported from None
        out.append(b"s" + _U64.pack(len(data)) + data)
        return
    if kind is int:
        if not -(2**63) <= value < 2**63:
            raise _Unsupported
        out.append(b"i" + _U64.pack(value & 0xFFFF_FFFF_FFFF_FFFF))
    elif kind is float:
        out.append(b"f" + struct.pack("<d", value))
    elif value is True:
        out.append(b"t")
    elif value is False:
        out.append(b"F")
    elif value is None:
        out.append(b"n")
    elif depth > _MAX_DEPTH:  # a container deeper than anyone sends (as `freeze`)
        raise _Unsupported
    elif kind is dict:
        out.append(b"d" + _U64.pack(len(value)))
        for key, item in value.items():
            if key.__class__ is not str:
                raise _Unsupported
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    elif kind is list:
        out.append(b"l" + _U64.pack(len(value)))
        for item in value:
            _encode(item, out, depth + 1)
    else:
        raise _Unsupported


def _digest(value: Any, depth: int) -> bytes | None:
    out: list[bytes] = []
    try:
        _encode(value, out, depth)
    except _Unsupported:
        return None
    return xxhash.xxh3_128_digest(b"".join(out))


def struct_hash(value: Any) -> bytes | None:
    """16-byte structural digest of a parsed JSON value, or None (see the module docstring)."""
    return _digest(value, 0)


def freeze(value: Any) -> Any:
    """An immutable copy of a parsed JSON value for `matches` (see the module docstring).

    Lists become tuples of frozen items; dicts become (Ellipsis, key0, frozen value0, ...);
    atoms (exact str, int, float, True, False, None) stay themselves. ValueError where
    `struct_hash` gives None.
    """
    try:
        return _freeze(value, 0)
    except _Unsupported:
        raise ValueError("not plain JSON (see struct_hash)") from None


def _freeze(value: Any, depth: int) -> Any:
    kind = value.__class__
    if kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unsupported from None
        return value
    if kind is int:
        if not -(2**63) <= value < 2**63:
            raise _Unsupported
        return value
    if kind is float or value is True or value is False or value is None:
        return value
    if depth > _MAX_DEPTH:
        raise _Unsupported
    if kind is list:
        return tuple([_freeze(item, depth + 1) for item in value])
    if kind is dict:
        frozen: list[Any] = [...]
        for key, item in value.items():
            if key.__class__ is not str:
                raise _Unsupported
            frozen.append(_freeze(key, depth + 1))
            frozen.append(_freeze(item, depth + 1))
        return tuple(frozen)
    raise _Unsupported


def matches(frozen: Any, value: Any, _depth: int = 0) -> bool:
    """`value` is structurally what `frozen` was frozen from (exact types, key order, float bits)."""
    kind = value.__class__
    if kind is str:
        return frozen.__class__ is str and frozen == value
    if kind is int:
        return frozen.__class__ is int and frozen == value
    if kind is float:
        return frozen.__class__ is float and struct.pack("<d", frozen) == struct.pack("<d", value)
    if value is True or value is False or value is None:
        return frozen is value
    if _depth > _MAX_DEPTH or frozen.__class__ is not tuple:
        return False
    if kind is list:
        if len(frozen) != len(value) or (value and frozen[0] is ...):
            return False
        return all(matches(f, v, _depth + 1) for f, v in zip(frozen, value))
    if kind is dict:
        if len(frozen) != 1 + 2 * len(value) or frozen[0] is not ...:
            return False
        i = 1
        for key, item in value.items():
            if key.__class__ is not str:
                return False
            if not matches(frozen[i], key, _depth + 1):
                return False
            if not matches(frozen[i + 1], item, _depth + 1):
                return False
            i += 2
        return True
    return False


def common(frozen: list[Any], values: list[Any]) -> int:
    """How many leading items of the list `values` match the frozen items."""
    if not isinstance(frozen, list) or not isinstance(values, list):
        raise TypeError("common(frozen: list, values: list)")
    count = 0
    for f, v in zip(frozen, values):
        if not matches(f, v):
            break
        count += 1
    return count


def digest_count(
    text: str,
    seed: int,
    factor: float,
    chars_per_token: float,
    punct_weight: float,
    newline_weight: float,
    non_ascii_weight: float,
    punct: bytes,
) -> tuple[int, int] | None:
    """(xxh3-64 of the UTF-8 with `seed`, EstimatingCounter's estimate), or None."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    digest = xxhash.xxh3_64_intdigest(data, seed=seed)
    if not text:
        return digest, 0
    chars = len(text)
    punct_count = len(data) - len(data.translate(None, punct))
    newlines = data.count(b"\n")
    extra = len(data) - chars
    plain = chars - punct_count - newlines
    estimate = (
        plain / chars_per_token
        + punct_count * punct_weight
        + newlines * newline_weight
        + extra * non_ascii_weight
    )
    return digest, max(1, math.ceil(estimate * factor))


def native() -> ModuleType | None:
    """The compiled `simcore` module, or None (not built, stale, or CACHESCOPE_PURE=1)."""
    return None
