"""`make demo` / `cachescope demo`: the Aura quickstart, executed headless on the offline simulator.

`main()` runs `notebooks/01-quickstart.ipynb` top to bottom with nbclient (a kernel on this
interpreter, working directory `notebooks/`, never the network), prints the headline numbers the
notebook publishes — hit share before and after the timestamp fix, and what the fix saved — and
writes the executed notebook as HTML (`build/01-quickstart.html`). Without the notebook extra or
outside a checkout, it runs the same story as a script (`_demo_run.run_story`).

`aura_prompt`, `MODEL` and `show_request` stay here for the script version and the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cachescope.blocks import flatten
from cachescope.prompt import Layer, Prompt

MODEL = "claude-sonnet-5"

PERSONALITY = """\
You are Aura, a personal assistant who keeps track of the user's day.
Be warm but brief. Prefer bullet points for lists, and always say when you are unsure.

## How you work
- You remember what the user told you in earlier conversations (see the memories layer).
- You never invent appointments, people or numbers.
- When the user asks about time, use the current time given in the dynamic layer.
- When a question needs a tool you do not have, say so and suggest what would help.
"""

# A realistic stable layer is long: instructions, style guide, examples.
GUIDE = "\n".join(
    f"{n}. Example exchange {n}: the user asks about task {n}; Aura answers with the status, "
    f"the next step and who owns it, in at most three bullet points."
    for n in range(1, 121)
)

MEMORIES = """\
- The user's name is Sam; they work on the payments team.
- Sam prefers tea over coffee and runs on Tuesday evenings.
- Sam's manager is Priya; their 1:1 is every Thursday at 10:00.
"""


def aura_prompt(now: str, *, timestamp_in_stable: bool) -> Prompt:
    """The Aura prompt; with `timestamp_in_stable` the time sits at the top of the stable layer."""
    stable = PERSONALITY + "\n" + GUIDE
    if timestamp_in_stable:
        stable = f"Current time: {now}\n\n{stable}"
        dynamic = ""
    else:
        dynamic = f"Current time: {now}"
    return Prompt(
        MODEL,
        [
            Layer("stable", stable, ttl="1h"),
            Layer("conversation", MEMORIES),
            Layer("dynamic", dynamic),
        ],
    )


def _shorten(value: Any, limit: int = 72) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    if isinstance(value, list):
        return [_shorten(item, limit) for item in value]
    if isinstance(value, dict):
        return {key: _shorten(item, limit) for key, item in value.items()}
    return value


def show_request(prompt: Prompt) -> None:
    params = prompt.render(user="What is on my calendar today?", max_tokens=512)
    print("The rendered request (texts shortened):")
    print(json.dumps(_shorten(params), indent=2, ensure_ascii=False))
    print("\nCache positions in order (tools → system → messages):")
    for block in flatten(params).blocks:
        mark = f"◆ breakpoint ttl={block.ttl}" if block.cache_control else ""
        print(f"  {block.path:<22} {block.layer or '':<13} ~{block.tokens:>5} tokens  {mark}")


QUICKSTART = "01-quickstart.ipynb"
#: The mime type of the quickstart's headline output (a JSON object), read back by `main`.
HEADLINE_MIME = "application/vnd.cachescope.headline+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT = 300  # seconds per cell; the slowest cell takes a few seconds on the simulator


class NotebookUnavailable(Exception):
    """The quickstart cannot be executed here (no notebook extra, no checkout, no kernel)."""


def find_notebooks() -> Path | None:
    """The `notebooks/` folder holding the quickstart: under the working directory or the checkout."""
    checkout = Path(__file__).resolve().parents[2]
    for folder in (Path.cwd() / "notebooks", checkout / "notebooks"):
        if (folder / QUICKSTART).is_file():
            return folder
    return None


@contextlib.contextmanager
def _kernel_on_this_python() -> Iterator[Any]:
    """A kernel manager whose only kernelspec runs ipykernel on this interpreter.

    A `python3` kernelspec elsewhere on the Jupyter path (e.g. one installed with `--user`) may point
    at another Python without cachescope, so the demo brings its own, in a temporary folder.
    """
    try:
        import ipykernel  # noqa: F401 - the kernel must be importable on this interpreter
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
    except ImportError as error:
        raise NotebookUnavailable(f"{error.name or error} is not installed") from None
    with tempfile.TemporaryDirectory(prefix="cachescope-kernel-") as folder:
        spec_dir = Path(folder) / "cachescope-demo"
        spec_dir.mkdir()
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        specs = KernelSpecManager(kernel_dirs=[folder], ensure_native_kernel=False)
        yield KernelManager(kernel_name="cachescope-demo", kernel_spec_manager=specs)


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """The kernel inherits this environment: never the API, whatever the shell has set."""
    saved = {name: os.environ.pop(name, None) for name in ("CACHESCOPE_USE_API",)}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


def for_reading(nb: Any) -> Any:
    """Drop widget state and widget views (they need a live kernel); PNGs and text remain."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", ()):
            data = output.get("data")
            if data is not None:
                data.pop(WIDGET_VIEW, None)
    return nb


def headline_of(nb: Any) -> dict[str, Any]:
    """The headline numbers the quickstart publishes under `HEADLINE_MIME`."""
    for cell in nb.cells:
        for output in cell.get("outputs", ()):
            data = output.get("data") or {}
            if HEADLINE_MIME in data:
                value = data[HEADLINE_MIME]
                return dict(json.loads(value) if isinstance(value, str) else value)
    raise ValueError(f"{QUICKSTART} ran but published no {HEADLINE_MIME} output.")


def run_quickstart(notebooks: Path, html_path: Path | None = None) -> dict[str, Any]:
    """Execute the quickstart on the simulator; write it as HTML; return its headline numbers.

    Raises `NotebookUnavailable` when the notebook extra is missing, and nbclient's
    `CellExecutionError` when a cell fails (including the notebook's own assertions).
    """
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as error:
        raise NotebookUnavailable(f"{error.name or error} is not installed") from None
    read: Any = nbformat.read  # untyped
    nb = read(str(notebooks / QUICKSTART), as_version=4)
    with _kernel_on_this_python() as kernel, _offline():
        client = NotebookClient(
            nb,
            km=kernel,
            timeout=CELL_TIMEOUT,
            resources={"metadata": {"path": str(notebooks)}},
            record_timing=False,
            coalesce_streams=True,
        )
        # The kernel's own log (e.g. its transport warning) is not the demo's output.
        client.execute(stderr=subprocess.DEVNULL)
    headline = headline_of(nb)
    if html_path is not None:
        write_html(for_reading(nb), html_path)
    return headline


def write_html(nb: Any, path: Path) -> None:
    """The executed notebook as a standalone HTML page (nbconvert's lab template)."""
    from nbconvert import HTMLExporter

    exporter: Any = HTMLExporter  # untyped
    body, _ = exporter(template_name="lab").from_notebook_node(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")


def print_headline(headline: Mapping[str, Any]) -> None:
    calls = headline.get("calls", 20)
    print(f"Aura, {calls} calls a minute apart on the offline simulator (model {MODEL}):")
    print(
        f"  hit share with the timestamp in the stable layer  {headline['hit_share_before']:>7.1%}"
    )
    print(
        f"  hit share with the timestamp moved (the fix)      {headline['hit_share_after']:>7.1%}"
    )
    print(
        f"  cost of the {calls} calls: ${headline['cost_before']:.4f} -> ${headline['cost_after']:.4f}"
        f"  (${headline['saved']:.4f} saved, {headline['cost_factor']:.1f}x less)"
    )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> int:
    """Run the quickstart headless and print its headline; 0 when the fix reaches 90% hit share."""
    print("cachescope demo — the Aura quickstart, executed headless on the offline simulator\n")
    notebooks = find_notebooks()
    if notebooks is None:
        print(f"({QUICKSTART} is not here: running the same story as a script.)\n")
        return _script()
    html_path = notebooks.parent / "build" / QUICKSTART.replace(".ipynb", ".html")
    print(f"Running {_shown(notebooks / QUICKSTART)} (about a minute) …", flush=True)
    try:
        headline = run_quickstart(notebooks, html_path)
    except NotebookUnavailable as why:
        print(f"(The notebook cannot run here: {why}. Running the same story as a script.)\n")
        return _script()
    except Exception as error:  # a failed cell or assertion: the demo must say so, not hide it
        print(f"\nThe quickstart failed:\n{error}", file=sys.stderr)
        return 1
    print()
    print_headline(headline)
    print(f"\nThe executed notebook: {_shown(html_path)}")
    fixed = headline["hit_share_after"] >= 0.9 and headline["hit_share_before"] < 0.01
    return 0 if fixed else 1


def _script() -> int:
    show_request(aura_prompt("2026-11-21T10:00:00Z", timestamp_in_stable=False))
    from cachescope._demo_run import run_story

    print()
    return run_story()


if __name__ == "__main__":
    raise SystemExit(main())
