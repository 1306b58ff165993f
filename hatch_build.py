"""Compile cachescope's optional C accelerators (``src/cachescope/_native/*.c``).

Each ``.c`` file in ``src/cachescope/_native/`` is one extension module of the same name, built
in place next to its source so editable installs and the source tree import it directly.
Everything they do has a pure-Python twin, and a test holds the two to identical results, so a
machine without a C compiler still gets a working (slower) cachescope:

- ``pip install`` (wheel or editable) runs this as a hatchling build hook; a failed compile prints
  a warning and the build goes on pure-Python.
- ``python hatch_build.py`` rebuilds in place (``make native``), e.g. after editing a ``.c`` file.
  The loader (``cachescope._native.load``) refuses a module built from other sources than the ones
  beside it, so a stale build is never used silently.
- ``CACHESCOPE_NO_NATIVE=1`` skips compiling; ``CACHESCOPE_PURE=1`` at run time ignores the
  compiled modules.

Only the standard library is used: the hook runs in pip's isolated build environment.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

NATIVE_DIR = Path("src") / "cachescope" / "_native"


def source_hash(native_dir: Path, name: str) -> str:
    """The hash a module is built from: its ``.c`` file and every header beside it.

    ``cachescope._native.source_hash`` computes the same at import time; the two are kept apart
    because this file runs in pip's build environment, where cachescope cannot be imported.
    """
    digest = hashlib.sha256()
    for path in [native_dir / f"{name}.c", *sorted(native_dir.glob("*.h"))]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def compile_command(native_dir: Path, name: str, output: Path) -> list[str]:
    """The compiler invocation for one module (the interpreter's own compiler and headers)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    include = sysconfig.get_paths()["include"]
    # macOS links extension modules as bundles that find Python's symbols at load time.
    link = ["-bundle", "-undefined", "dynamic_lookup"] if sys.platform == "darwin" else ["-shared"]
    return [
        *compiler,
        "-O3",
        *link,
        "-fPIC",
        "-std=c99",
        "-Wall",
        "-fno-strict-aliasing",
        f"-I{include}",
        f"-I{native_dir}",
        f'-DCACHESCOPE_SOURCE_HASH="{source_hash(native_dir, name)}"',
        str(native_dir / f"{name}.c"),
        "-o",
        str(output),
    ]


def build_native(root: Path, *, output_dir: Path | None = None, quiet: bool = False) -> list[Path]:
    """Compile every module (in place unless ``output_dir``); return the files built.

    A module that fails to compile is reported on stderr and left out: cachescope then uses its
    pure-Python twin. Each module is compiled to a temporary file and renamed over the old one, so
    a process that has the old one loaded keeps its mapping intact (writing into a loaded shared
    object in place can crash that process).
    """
    native_dir = root / NATIVE_DIR
    output_dir = native_dir if output_dir is None else output_dir
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built: list[Path] = []
    if os.environ.get("CACHESCOPE_NO_NATIVE"):
        print(
            "cachescope: CACHESCOPE_NO_NATIVE is set; not compiling accelerators", file=sys.stderr
        )
        return built
    for source in sorted(native_dir.glob("*.c")):
        name = source.stem
        output = output_dir / f"{name}{suffix}"
        partial = output_dir / f".{name}.{os.getpid()}.partial{suffix}"
        command = compile_command(native_dir, name, partial)
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:
            print(
                f"cachescope: warning: no C compiler ({exc}); {name} stays pure-Python (slower)",
                file=sys.stderr,
            )
            continue
        if result.returncode != 0:
            print(
                f"cachescope: warning: compiling {source} failed; it stays pure-Python (slower).\n"
                f"  command: {' '.join(command)}\n{result.stderr.strip()}",
                file=sys.stderr,
            )
            partial.unlink(missing_ok=True)
            output.unlink(missing_ok=True)
            continue
        os.replace(partial, output)
        if result.stderr.strip() and not quiet:
            print(result.stderr.strip(), file=sys.stderr)
        built.append(output)
    return built


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script without hatchling installed
    BuildHookInterface = object  # type: ignore[assignment,misc]


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling hook: compile the accelerators and ship them in the wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        built = build_native(root)
        if not built:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports them from src/ directly
            for path in built:
                build_data["force_include"][str(path)] = str(path.relative_to(root / "src"))


if __name__ == "__main__":
    modules = build_native(Path(__file__).resolve().parent)
    print("\n".join(f"built {path}" for path in modules) or "nothing built")
