"""Driving a notebook in JupyterLab's page the way a learner does: menus, prompts, outputs.

Everything here reads what the page shows (prompts, rendered outputs); the only
thing asked of the server is whether the notebook's kernel is idle.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

from tests.browser.lab_server import ROOT, Lab

#: The notebook on show: the page also restores, hidden, the notebooks opened before it.
CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"
#: JupyterLab renders a cell's error output as stderr text (this mime type), headed by IPython's
#: "Traceback (most recent call last)"; a stderr stream carries that line only when something printed one.
STDERR_MIME = "application/vnd.jupyter.stderr"
TRACEBACK = "Traceback (most recent call last)"

#: One entry per code cell, in notebook order: its prompt and what its outputs show.
_READ_CODE_CELLS = f"""() => [...document.querySelectorAll('{CURRENT} .jp-Notebook .jp-CodeCell')].map(cell => {{
  const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')];
  return {{
    prompt: (cell.querySelector('.jp-InputPrompt') || {{}}).textContent || '',
    text: outputs.map(o => o.textContent).join('\\n'),
    stderr: outputs.filter(o => o.dataset.mimeType === '{STDERR_MIME}').map(o => o.textContent),
    images: cell.querySelectorAll('.jp-OutputArea-output img').length,
  }};
}})"""

#: Counts every <progress> element ever added to an output area, however briefly it lived.
PROGRESS_WATCHER = """
window.__progressBarsSeen = 0;
new MutationObserver(records => {
  for (const record of records) for (const node of record.addedNodes) {
    if (node.nodeType !== 1) continue;
    const bars = node.matches('progress') ? [node] : [...node.querySelectorAll('progress')];
    window.__progressBarsSeen += bars.filter(bar => bar.closest('.jp-OutputArea')).length;
  }
}).observe(document, {childList: true, subtree: true});
"""


#: Clicked from the page's script: the toast slides in, and Playwright's click waits for it to stand still.
_ANSWER_NO_TO_NEWS = """() => {
  for (const toast of document.querySelectorAll('.Toastify__toast')) {
    if (!/news/i.test(toast.textContent)) continue;
    const no = [...toast.querySelectorAll('button')].find(button => button.textContent.trim() === 'No');
    if (no) no.click();
  }
}"""


@dataclass(frozen=True)
class CodeCell:
    prompt: str
    text: str
    stderr: list[str]
    images: int

    @property
    def executed(self) -> bool:
        return re.fullmatch(r"\s*\[\d+\]:?\s*", self.prompt) is not None

    @property
    def queued(self) -> bool:
        """Queued or running: JupyterLab shows [*] until the cell's reply comes back."""
        return "*" in self.prompt

    def tracebacks(self) -> list[str]:
        """Error outputs, and any traceback printed to stderr."""
        return [text for text in self.stderr if TRACEBACK in text]


@dataclass(frozen=True)
class StoredNotebook:
    """What the .ipynb file says: cell counts, tags, and the images its stored outputs hold."""

    path: str
    cells: int
    code_cells: int
    raises_exception: frozenset[int]  # indices among the code cells
    stored_images: int

    @classmethod
    def read(cls, path: str) -> StoredNotebook:
        cells = json.loads((ROOT / path).read_text())["cells"]
        code = [cell for cell in cells if cell["cell_type"] == "code"]
        return cls(
            path=path,
            cells=len(cells),
            code_cells=len(code),
            raises_exception=frozenset(
                i for i, cell in enumerate(code) if "raises-exception" in cell["metadata"].get("tags", [])
            ),
            stored_images=sum(
                1
                for cell in code
                for output in cell.get("outputs", [])
                if any(mime.startswith("image/") for mime in output.get("data", {}))
            ),
        )


def read_code_cells(page: Page) -> list[CodeCell]:
    return [CodeCell(**cell) for cell in page.evaluate(_READ_CODE_CELLS)]


def open_notebook(page: Page, lab: Lab, notebook: StoredNotebook, timeout: float = 90) -> float:
    """Open the notebook's page and wait until every cell is on it and the kernel is idle; return seconds."""
    started = time.monotonic()
    page.goto(lab.page_url(notebook.path))
    _wait_for(
        lambda: page.locator(f"{CURRENT} .jp-Notebook .jp-Cell").count() == notebook.cells,
        timeout,
        f"{notebook.path}: the page did not show its {notebook.cells} cells",
        page,
    )
    _wait_for(lambda: lab.kernel_state(notebook.path) == "idle", timeout, f"{notebook.path}: no idle kernel", page)
    return time.monotonic() - started


def use_menu(page: Page, menu: str, command: str) -> None:
    """Click a menu of the menu bar, then its item that runs `command` (a JupyterLab command id)."""
    dismiss_news(page)
    fail_on_dialog(page)
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{menu}$")).click()
    item = page.locator(f'.lm-Menu-item[data-command="{command}"]')
    item.wait_for(state="visible", timeout=10_000)
    assert "lm-mod-disabled" not in (item.get_attribute("class") or ""), f"{menu} > {command} is disabled"
    item.click()


def clear_outputs(page: Page, notebook: StoredNotebook) -> None:
    """Edit > Clear Outputs of All Cells, so that nothing stored in the file passes for a result of this run."""
    use_menu(page, "Edit", "editmenu:clear-all")
    _wait_for(
        lambda: all(not cell.executed and not cell.text for cell in read_code_cells(page)),
        10,
        f"{notebook.path}: outputs still shown after clearing",
        page,
    )


def run_all_cells(
    page: Page, lab: Lab, notebook: StoredNotebook, timeout: float, while_running: Callable[[], None] = lambda: None
) -> tuple[float, list[CodeCell]]:
    """Run > Run All Cells; wait until every code cell has an execution count and the kernel is idle.

    Run All stops at a cell that raises (unless it is tagged raises-exception) and
    leaves the cells after it without a count: the wait ends when no cell is queued
    or running any more. `while_running` is called between checks.
    Returns the seconds it took and the code cells as the page shows them.
    """
    use_menu(page, "Run", "runmenu:run-all")
    started = time.monotonic()
    _wait_for(
        lambda: any(cell.queued or cell.executed for cell in read_code_cells(page)),
        15,
        f"{notebook.path}: Run All did not start",
        page,
    )
    deadline = started + timeout
    while True:
        cells = read_code_cells(page)
        if not any(cell.queued for cell in cells) and lab.kernel_state(notebook.path) == "idle":
            return time.monotonic() - started, cells
        if time.monotonic() > deadline:
            waiting = [i for i, cell in enumerate(cells) if not cell.executed]
            raise AssertionError(
                f"{notebook.path}: Run All not finished after {timeout:.0f} s; code cells without an "
                f"execution count: {waiting}; kernel {lab.kernel_state(notebook.path)}"
            )
        dismiss_news(page)
        fail_on_dialog(page)
        while_running()
        time.sleep(0.2)


def error_report(notebook: StoredNotebook, cells: list[CodeCell]) -> list[str]:
    """Tracebacks on the page outside cells tagged raises-exception, and cells Run All never reached."""
    report = []
    for i, cell in enumerate(cells):
        if i not in notebook.raises_exception:
            report += [f"code cell {i} ({cell.prompt.strip()}): {text.strip()[-800:]}" for text in cell.tracebacks()]
    not_run = [i for i, cell in enumerate(cells) if not cell.executed]
    if not_run:
        report.append(f"code cells without an execution count (Run All stopped before them): {not_run}")
    return report


def dismiss_news(page: Page) -> None:
    """Answer "No" to JupyterLab's question about fetching news, if it is on the page."""
    page.evaluate(_ANSWER_NO_TO_NEWS)


def fail_on_dialog(page: Page) -> None:
    """A modal dialog would stop a learner too: report it instead of clicking it away."""
    dialogs = page.locator(".jp-Dialog")
    if dialogs.count():
        raise AssertionError(f"a dialog is open on the page: {dialogs.first.inner_text()[:500]}")


def screenshot(page: Page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path


def _wait_for(condition: Callable[[], bool], timeout: float, message: str, page: Page) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout:.0f} s")
        dismiss_news(page)
        time.sleep(0.2)
