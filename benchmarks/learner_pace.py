"""Run notebooks the way a learner does: a pause before every code cell.

nbval runs cells back to back, so a notebook can pass there and still fail a
learner who reads for a while between two cells: a query that was meant to
be still running has ended, a server-side timeout has cut an idle
connection. This runs each notebook in a kernel of its own with a pause
before every code cell and reports, per notebook, whether it passed and,
if not, the failing cell's error. Slow by design (a 15 s pause makes each
notebook take minutes), so run it by hand before a release:

    .venv/bin/python -m benchmarks.learner_pace --pause 15 notebooks/09_*.ipynb

It exits 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


class PausingClient(NotebookClient):
    """An nbclient that waits `pause` seconds before each code cell, as a reader does."""

    def __init__(self, nb: nbformat.NotebookNode, pause: float, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self.pause = pause

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        if cell.cell_type == "code":
            await asyncio.sleep(self.pause)
        return await super().async_execute_cell(cell, cell_index, *args, **kwargs)


def run_at_pace(path: Path, pause: float, cell_timeout: float = 300) -> str | None:
    """Run one notebook with `pause` seconds before each code cell: None if it passed, else the error's end."""
    notebook = nbformat.read(path, as_version=4)
    client = PausingClient(
        notebook, pause, timeout=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        return str(exc)[-1500:]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of the course")
    parser.add_argument("--pause", type=float, default=15.0, help="seconds before each code cell (default 15)")
    args = parser.parse_args(argv)
    if args.pause < 0:
        parser.error(f"--pause must be 0 or more seconds, got {args.pause}")
    paths = args.notebooks or sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    failed = 0
    for path in paths:
        started = time.perf_counter()
        error = run_at_pace(path, args.pause)
        failed += error is not None
        verdict = "passed" if error is None else "FAILED"
        print(f"{path.name}: {verdict} with {args.pause:g} s before each cell, {time.perf_counter() - started:.0f} s")
        if error is not None:
            print(error, file=sys.stderr, flush=True)
    print(f"{len(paths) - failed} of {len(paths)} notebooks passed at a learner's pace")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
