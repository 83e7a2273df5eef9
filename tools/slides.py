"""Give every notebook a slide flow for RISE, from its own headings.

An instructor presents a notebook as a slideshow (JupyterLab's RISE
extension: View > Render as slideshow, or Alt+R). RISE reads each cell's
``metadata.slideshow.slide_type``. Rather than tag by hand, this derives the
flow from the structure every notebook already has: the title and each
``##`` section start a new slide, each ``###`` a sub-slide (down arrow), and
every other cell continues the slide above it, so a demo's code and its
check stay on the slide that introduces them.

    python -m tools.slides notebooks/*.ipynb           write the metadata
    python -m tools.slides --check notebooks/*.ipynb   exit 1 if any cell's would change
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tools.normalise_notebooks import command_line


def slide_type(cell: dict[str, Any], first: bool) -> str:
    """RISE's slide type for one cell: "slide", "subslide" or "-" (continue)."""
    if first:
        return "slide"
    if cell.get("cell_type") == "markdown":
        heading = "".join(cell.get("source", "")).lstrip()
        if heading.startswith(("# ", "## ")):
            return "slide"
        if heading.startswith("### "):
            return "subslide"
    return "-"


def with_slides(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook with each cell's slide type set (a new dict)."""
    marked = json.loads(json.dumps(notebook))
    for index, cell in enumerate(marked.get("cells", [])):
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": slide_type(cell, index == 0)}
    return marked


def main(argv: list[str] | None = None) -> int:
    return command_line(argv, __doc__.splitlines()[0], with_slides, "given its slide flow")


if __name__ == "__main__":
    sys.exit(main())
