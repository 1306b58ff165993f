"""The optional C accelerators: built, loaded only when fresh, identical to their pure twins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import cachescope._native as native

ROOT = Path(__file__).resolve().parents[2]


def test_the_hashing_module_is_built_and_fresh() -> None:
    # With a C compiler at hand (CI has one), a missing module means the build went pure-Python.
    if native.pure_requested():
        pytest.skip("CACHESCOPE_PURE is set")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): cachescope runs its pure-Python twins")
    module = native.load("hashing")
    assert module is not None, "run `make native`: src/cachescope/_native/hashing.c is not built"
    assert native.source_hash("hashing") == module.SOURCE_HASH


@given(st.one_of(st.text(), st.binary()))
def test_native_xxh3_equals_the_python_package(value: str | bytes) -> None:
    module = native.load("hashing")
    if module is None:
        pytest.skip("no compiled accelerators")
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    if isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        with pytest.raises(UnicodeEncodeError):
            module.xxh3_64(value)
        return
    assert module.xxh3_64(value) == xxhash.xxh3_64_intdigest(data)


def test_native_xxh3_rejects_other_types_with_the_type_name() -> None:
    module = native.load("hashing")
    if module is None:
        pytest.skip("no compiled accelerators")
    with pytest.raises(TypeError, match="expected str or bytes, got int"):
        module.xxh3_64(3)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        timeout=60,
    )


def test_cachescope_pure_turns_every_accelerator_off() -> None:
    result = run_python(
        "import cachescope._native as n; print(n.load('hashing'))", CACHESCOPE_PURE="1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


def test_a_stale_build_is_refused_with_the_fix(tmp_path: Path) -> None:
    # A copy of the sources with one edited byte: the built module no longer matches them.
    native_dir = Path(native.__file__).parent
    (tmp_path / "hashing.c").write_text((native_dir / "hashing.c").read_text() + "\n/* edit */\n")
    for header in native_dir.glob("*.h"):
        (tmp_path / header.name).write_bytes(header.read_bytes())
    assert native.source_hash("hashing", tmp_path) != native.source_hash("hashing")

    module = native.load("hashing")
    if module is None:
        pytest.skip("no compiled accelerators")
    code = (
        "import warnings, pathlib, cachescope._native as n\n"
        f"n._HERE = pathlib.Path({str(tmp_path)!r})\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    print(n.load('hashing'))\n"
        "print(caught[0].message)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    first, message = result.stdout.strip().split("\n", 1)
    assert first == "None"
    assert "make native" in message
    assert "other sources" in message


def test_the_build_script_reports_what_it_built() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hatch_build.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "built " in result.stdout
    assert "hashing" in result.stdout


def test_without_a_compiler_the_build_warns_and_goes_on(tmp_path: Path) -> None:
    code = (
        "import sys, sysconfig, pathlib\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import hatch_build\n"
        "real = sysconfig.get_config_var\n"
        "sysconfig.get_config_var = lambda k: '/nonexistent/cc' if k == 'CC' else real(k)\n"
        f"print(hatch_build.build_native(pathlib.Path({str(ROOT)!r}), output_dir=pathlib.Path({str(tmp_path)!r})))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert "no C compiler" in result.stderr
    assert "pure-Python" in result.stderr


def test_a_rebuild_replaces_modules_without_writing_into_a_loaded_one(tmp_path: Path) -> None:
    # A process holding the old module keeps working: the new file is renamed over it, so the
    # old inode (which the process has mapped) is never written to.
    code = (
        "import sys, pathlib\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import hatch_build\n"
        f"out = pathlib.Path({str(tmp_path)!r})\n"
        f"root = pathlib.Path({str(ROOT)!r})\n"
        "first = {p.name: p.stat().st_ino for p in hatch_build.build_native(root, output_dir=out)}\n"
        "second = {p.name: p.stat().st_ino for p in hatch_build.build_native(root, output_dir=out)}\n"
        "assert first and first.keys() == second.keys(), (first, second)\n"
        "assert all(first[n] != second[n] for n in first), 'a module was rewritten in place'\n"
        "print(sorted(p.name for p in out.iterdir()))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "partial" not in result.stdout
