"""What a reader of the saved notebooks sees: no progress bar frozen half-way.

A progress widget saved in a notebook keeps the plain-text copy it had when
it appeared ("closed loop: 40% ... 16/40"), which a reader on the web takes
for the result. support.lab.load's bars must end as a finished line; this
checks the saved outputs of every notebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.attached_notebooks import NOTEBOOK_IDS, NOTEBOOKS

#: "16/40 [" as tqdm prints done/total before the elapsed time.
_BAR_COUNT = re.compile(r"(\d+)/(\d+) \[")


def partial_bars(notebook: Path) -> list[str]:
    """'cell N: <text>' for every saved output showing a bar with done < total."""
    found = []
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                text = "".join(text) if isinstance(text, list) else str(text)
                for match in _BAR_COUNT.finditer(text):
                    if int(match.group(1)) < int(match.group(2)):
                        found.append(f"cell {index}: {text[max(0, match.start() - 50) : match.end()].strip()}")
    return found


def test_a_partial_bar_is_found(tmp_path: Path):
    saved = tmp_path / "x.ipynb"
    output = {"output_type": "display_data", "data": {"text/plain": "closed loop:  40%|####  | 16/40 [00:00<?, ?it/s]"}}
    saved.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": [output]}]}))
    assert partial_bars(saved) == ["cell 0: closed loop:  40%|####  | 16/40 ["]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=NOTEBOOK_IDS)
def test_no_saved_output_shows_a_partial_progress_bar(notebook: Path):
    assert not partial_bars(notebook), partial_bars(notebook)
