"""Optional C accelerators, each with a pure-Python twin that gives identical results.

Every ``<name>.c`` here compiles to the extension module ``cachescope._native.<name>`` (see
``hatch_build.py``: ``pip install`` builds them, ``make native`` rebuilds them in place). Callers
ask :func:`load` and fall back to their pure-Python path when it returns ``None``:

- no compiled module (no C compiler at install time, or an unusual platform);
- ``CACHESCOPE_PURE=1`` in the environment (the tests use it to check both paths agree);
- a module compiled from other sources than the ones beside it (a stale in-place build after an
  edit), which is refused with one :class:`~cachescope.CachescopeWarning` naming the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType

__all__ = ["load", "pure_requested", "source_hash"]

_HERE = Path(__file__).resolve().parent
_loaded: dict[str, ModuleType | None] = {}


def pure_requested() -> bool:
    """True when ``CACHESCOPE_PURE`` asks for the pure-Python paths everywhere."""
    return os.environ.get("CACHESCOPE_PURE", "") not in ("", "0")


def source_hash(name: str, native_dir: Path | None = None) -> str | None:
    """The hash ``hatch_build.source_hash`` stamps into a module, or None without sources."""
    native_dir = _HERE if native_dir is None else native_dir
    source = native_dir / f"{name}.c"
    if not source.exists():
        return None
    digest = hashlib.sha256()
    for path in [source, *sorted(native_dir.glob("*.h"))]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load(name: str) -> ModuleType | None:
    """The compiled module ``name``, or None when the pure-Python path must be used."""
    if name in _loaded:
        return _loaded[name]
    module: ModuleType | None = None
    if not pure_requested():
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError:
            module = None
        if module is not None:
            expected = source_hash(name)
            built_from = getattr(module, "SOURCE_HASH", None)
            if expected is not None and built_from != expected:
                from .._errors import CachescopeWarning

                warnings.warn(
                    f"cachescope._native.{name} was compiled from other sources than "
                    f"{_HERE / (name + '.c')}; using the pure-Python path. "
                    "Rebuild with `make native` (or `python hatch_build.py`).",
                    CachescopeWarning,
                    stacklevel=2,
                )
                module = None
    _loaded[name] = module
    return module
