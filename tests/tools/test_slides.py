"""Every notebook presents as a slideshow: each section a slide, its demos on the same slide."""

from __future__ import annotations

import json
from pathlib import Path

from tools.slides import slide_type, with_slides

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def md(text: str) -> dict:
    return {"cell_type": "markdown", "source": text, "metadata": {}}


def test_sections_start_slides_and_the_rest_continues() -> None:
    assert slide_type(md("# Title"), first=True) == "slide"
    assert slide_type(md("## 2. The pool"), first=False) == "slide"
    assert slide_type(md("### A detail"), first=False) == "subslide"
    assert slide_type(md("Some prose"), first=False) == "-"
    assert slide_type({"cell_type": "code", "source": "## not a heading"}, first=False) == "-"
    marked = with_slides({"cells": [md("# T"), md("text"), md("## S")]})
    assert [c["metadata"]["slideshow"]["slide_type"] for c in marked["cells"]] == ["slide", "-", "slide"]


def test_every_stored_notebook_carries_its_slide_flow() -> None:
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        notebook = json.loads(path.read_text())
        assert with_slides(notebook) == notebook, f"run: .venv/bin/python -m tools.slides {path}"
        slides = sum(c["metadata"]["slideshow"]["slide_type"] == "slide" for c in notebook["cells"])
        assert slides >= 4, f"{path.name} has only {slides} slides"
