"""Strip what changes on every run from stored notebooks, keep the outputs.

Readers on the web need the outputs; reviewers need diffs that show only what
changed in the lesson. Execution timestamps (``metadata.execution``, the
``ExecuteTime`` extension's ``metadata.ExecuteTime``) and the widget state
snapshot change on every run and say nothing, so they go. Outputs and
execution counts stay.

    python -m tools.normalise_notebooks notebooks/*.ipynb      rewrite in place
    python -m tools.normalise_notebooks --check notebooks/*.ipynb   exit 1 if any would change
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

VOLATILE_CELL_METADATA = ("execution", "ExecuteTime")
VOLATILE_NOTEBOOK_METADATA = ("widgets",)


def normalise(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook without volatile metadata (a new dict; the argument is not changed)."""
    clean = json.loads(json.dumps(notebook))
    for key in VOLATILE_NOTEBOOK_METADATA:
        clean.get("metadata", {}).pop(key, None)
    for cell in clean.get("cells", []):
        for key in VOLATILE_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
    return clean


def dumps(notebook: dict[str, Any]) -> str:
    """Serialise the way Jupyter does (one-space indent, a final newline), so saving in JupyterLab is a no-op."""
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def rewrite(paths: list[Path], transform: Callable[[dict[str, Any]], dict[str, Any]], check: bool, label: str) -> int:
    """Apply ``transform`` to each notebook file; with ``check``, only report. Exit status 1 when a check finds work."""
    changed = []
    for path in paths:
        before = path.read_text(encoding="utf-8")
        after = dumps(transform(json.loads(before)))
        if after != before:
            changed.append(path)
            if not check:
                path.write_text(after, encoding="utf-8")
    for path in changed:
        print(f"{'would be ' if check else ''}{label}: {path}")
    return 1 if (check and changed) else 0


def command_line(
    argv: list[str] | None, description: str, transform: Callable[[dict[str, Any]], dict[str, Any]], label: str
) -> int:
    """The shared command line of the notebook tools: paths, and ``--check`` to change nothing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    return rewrite(args.paths, transform, args.check, label)


def main(argv: list[str] | None = None) -> int:
    return command_line(argv, __doc__.splitlines()[0], normalise, "normalised")


if __name__ == "__main__":
    sys.exit(main())
