"""The learner-pace runner really pauses before each code cell and reports a failing notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from benchmarks.learner_pace import main, run_at_pace

PAUSE = 0.4


def notebook_that_needs_a_reader(tmp_path: Path) -> Path:
    """Two cells; the second fails unless at least PAUSE seconds passed since the first."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("A reader spends time here."),
        nbformat.v4.new_code_cell("import time\nfirst_ran = time.monotonic()"),
        nbformat.v4.new_code_cell(f"assert time.monotonic() - first_ran >= {PAUSE}, 'no pause before this cell'"),
    ]
    path = tmp_path / "reader.ipynb"
    nbformat.write(notebook, path)
    return path


def test_a_pause_comes_before_each_code_cell(tmp_path: Path) -> None:
    assert run_at_pace(notebook_that_needs_a_reader(tmp_path), PAUSE) is None


def test_a_failing_cell_is_reported_with_its_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = notebook_that_needs_a_reader(tmp_path)
    assert main([str(path), "--pause", "0"]) == 1
    out, err = capsys.readouterr()
    assert "reader.ipynb: FAILED" in out and "0 of 1 notebooks passed" in out
    assert "no pause before this cell" in err


def test_a_missing_notebook_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "nope.ipynb")])
    assert stopped.value.code == 2
    assert "no such notebook" in capsys.readouterr().err
