"""Stored notebooks carry their outputs but nothing that changes on every run."""

from __future__ import annotations

import json
from pathlib import Path

from tools.normalise_notebooks import dumps, main, normalise

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_every_stored_notebook_is_normalised():
    assert NOTEBOOKS
    stale = [p.name for p in NOTEBOOKS if dumps(normalise(json.loads(p.read_text()))) != p.read_text()]
    assert stale == [], "run: .venv/bin/python -m tools.normalise_notebooks notebooks/*.ipynb"


def test_no_stored_notebook_has_execution_timestamps():
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            assert "execution" not in cell.get("metadata", {}), path.name


def test_normalise_drops_timestamps_and_keeps_outputs(tmp_path):
    cell = {
        "cell_type": "code",
        "execution_count": 3,
        "id": "a",
        "source": "1",
        "metadata": {"tags": ["x"], "execution": {"iopub.status.idle": "2026-01-01T00:00:00Z"}},
        "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}],
    }
    notebook = {
        "cells": [cell],
        "metadata": {"widgets": {"state": {}}, "kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    clean = normalise(notebook)
    assert clean["cells"][0]["metadata"] == {"tags": ["x"]}
    assert clean["cells"][0]["outputs"] == cell["outputs"] and clean["cells"][0]["execution_count"] == 3
    assert clean["metadata"] == {"kernelspec": {"name": "python3"}}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(notebook))
    assert main(["--check", str(path)]) == 1
    assert main([str(path)]) == 0 and main(["--check", str(path)]) == 0
