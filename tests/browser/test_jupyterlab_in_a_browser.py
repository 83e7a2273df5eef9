"""The course in a real browser: `./course lab`, headless Chromium, Run All through the menus.

nbval runs the notebooks in a kernel; this test looks at what a learner sees instead.
JupyterLab is started by the README's command (`./course lab`, plus no browser, a free
port on 127.0.0.1 and a random token), and Playwright drives the OS's Chromium (never a
downloaded browser). For notebook 00 and for 03 (load, a progress bar, plots) it clears
the stored outputs, runs all cells from the Run menu, waits until every code cell has an
execution count and the kernel is idle, and checks the page: no error output, the PASS
lines, the progress bar, the figures. It also checks that the slideshow extension (RISE)
is loaded. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.browser.lab_server import ROOT, Lab, course_lab, setup_is_current
from tests.browser.notebook_page import (
    CURRENT,
    PROGRESS_WATCHER,
    TRACEBACK,
    CodeCell,
    StoredNotebook,
    clear_outputs,
    error_report,
    open_notebook,
    run_all_cells,
    screenshot,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(480)]

ARTIFACTS = ROOT / "test-artifacts" / "browser"
TIMINGS = ARTIFACTS / "timings.txt"
SETUP_CHECK = "notebooks/00_setup_check.ipynb"
TRIGGERING = "notebooks/03_triggering_the_timeout.ipynb"
#: The line a finished progress bar of support.lab.load leaves: "open loop: 75/75 requests in 1.6 s".
FINISHED_PROGRESS = re.compile(r"\d+/\d+ requests in \d+(\.\d+)? s")
#: The command the slideshow extension (jupyterlab-rise) registers to open a notebook as slides.
RISE_SLIDESHOW = "RISE:slideshow"
#: Its notebook toolbar button runs this one (a slides preview beside the notebook).
RISE_PREVIEW = "RISE:preview"


def chromium() -> str:
    """The OS's Chromium, or a failure that says how to install it (a skip only on macOS)."""
    found = shutil.which("chromium")
    if found:
        return found
    if sys.platform == "darwin":
        pytest.skip("the browser test drives Debian's Chromium package; on macOS it is not run")
    pytest.fail(
        "Chromium is not installed, and this test drives the OS's Chromium (never a downloaded one). "
        "Install it with `sudo apt-get install -y chromium` (`./course test` does this on Debian), then rerun.",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def lab(browser: Browser) -> Iterator[Lab]:
    """`./course lab`, started once the browser is known to be there."""
    if not setup_is_current():
        pytest.fail(
            "`.venv` does not match requirements.txt and pyproject.toml, so `./course lab` would install "
            "packages before starting JupyterLab. Run `./course test` (or `./course lab` once), then rerun.",
            pytrace=False,
        )
    work_dir = Path(tempfile.mkdtemp(prefix="five-tables-browser-"))
    work_dir.chmod(0o755)  # the stacks' servers run as another account when tests run as root
    try:
        with course_lab(work_dir, ARTIFACTS / "jupyterlab.log") as running:
            command = " ".join(running.command).replace(running.token, "<token>")
            print(f"\nstarted: {command}")
            TIMINGS.write_text(f"JupyterLab started by: {command}\n")
            yield running
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.add_init_script(PROGRESS_WATCHER)
    yield context.new_page()
    context.close()


def run_through_the_menus(
    page: Page, lab: Lab, path: str, timeout: float, while_running: Callable[[], None] = lambda: None
) -> list[CodeCell]:
    """Open the notebook, clear its stored outputs, Run All; check no cell failed and the file is untouched."""
    notebook = StoredNotebook.read(path)
    stored = (ROOT / path).read_bytes()
    loaded = open_notebook(page, lab, notebook)
    clear_outputs(page, notebook)
    seconds, cells = run_all_cells(page, lab, notebook, timeout, while_running)
    timing = f"{path}: page ready in {loaded:.1f} s, Run All took {seconds:.1f} s"
    print(timing)
    with TIMINGS.open("a") as timings:
        timings.write(timing + "\n")

    assert (ROOT / path).read_bytes() == stored, "the browser run changed the notebook file"
    problems = error_report(notebook, cells)
    if problems:
        traceback = page.locator(f"{CURRENT} .jp-OutputArea-output").filter(has_text=TRACEBACK)
        if traceback.count():
            traceback.first.scroll_into_view_if_needed()
        shot = screenshot(page, ARTIFACTS / f"{Path(path).stem}_error.png")
        pytest.fail(f"{path} in the browser ({shot}):\n" + "\n".join(problems), pytrace=False)
    return cells


def test_setup_check_runs_all_cells_with_every_check_passing(lab: Lab, page: Page) -> None:
    cells = run_through_the_menus(page, lab, SETUP_CHECK, timeout=120)

    lines = [line.strip() for cell in cells for line in cell.text.splitlines()]
    assert [line for line in lines if line.startswith("FIX")] == []
    passes = [line for line in lines if line.startswith("PASS")]
    assert passes, "no PASS line on the page"
    outputs = page.locator(f"{CURRENT} .jp-OutputArea-output")
    shots = []
    for name, line in (("first", passes[0]), ("last", passes[-1])):
        output = outputs.filter(has_text=line).last
        output.scroll_into_view_if_needed()
        expect(output).to_be_visible()
        shots.append(str(screenshot(page, ARTIFACTS / f"00_setup_check_{name}_pass.png")))
    print(f"{len(passes)} PASS lines, the last: {passes[-1]!r}; screenshots {shots}")


def test_load_progress_bar_and_figures_render_in_notebook_03(lab: Lab, page: Page) -> None:
    progress_shot = ARTIFACTS / "03_progress_bar.png"
    progress_shot.unlink(missing_ok=True)

    def capture_progress_bar() -> None:
        bars = page.locator(f"{CURRENT} .jp-OutputArea-output progress")
        if progress_shot.exists() or not bars.count():
            return
        try:
            bars.first.scroll_into_view_if_needed(timeout=1000)
            screenshot(page, progress_shot)
        except PlaywrightError:  # the bar turned into its finished line meanwhile: the next one may do
            progress_shot.unlink(missing_ok=True)

    cells = run_through_the_menus(page, lab, TRIGGERING, timeout=240, while_running=capture_progress_bar)

    assert page.evaluate("window.__progressBarsSeen") > 0, "no <progress> bar appeared while the load ran"
    finished = [m.group() for cell in cells for m in FINISHED_PROGRESS.finditer(cell.text)]
    assert finished, "no finished progress line ('N/N requests in X s') on the page"
    finished_line = page.locator(f"{CURRENT} .jp-OutputArea-output").filter(has_text=FINISHED_PROGRESS).first
    finished_line.scroll_into_view_if_needed()
    expect(finished_line).to_be_visible()

    images = page.locator(f"{CURRENT} .jp-OutputArea-output img")
    expected = max(1, StoredNotebook.read(TRIGGERING).stored_images)
    assert images.count() >= expected, f"{images.count()} figures on the page, the file stores {expected}"
    shots = []
    for i in range(images.count()):
        image = images.nth(i)
        image.scroll_into_view_if_needed()
        expect(image).to_be_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), f"figure {i + 1} did not load"
        shots.append(str(screenshot(page, ARTIFACTS / f"03_figure_{i + 1}.png")))
    print(f"finished progress lines: {finished}; progress bar screenshot: {progress_shot.exists() and progress_shot}")
    print(f"{images.count()} figures; screenshots {shots}")


def test_the_slideshow_extension_is_loaded(lab: Lab, page: Page) -> None:
    open_notebook(page, lab, StoredNotebook.read(SETUP_CHECK))
    button = page.locator(f'{CURRENT} .jp-NotebookPanel-toolbar [data-command="{RISE_PREVIEW}"]')
    expect(button).to_be_visible()

    page.locator(f"{CURRENT} .jp-NotebookPanel-toolbar").click()  # the notebook has the focus, not a cell editor
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette-input")
    expect(palette).to_be_visible()
    palette.fill("slideshow")
    expect(page.locator(f'.lm-CommandPalette-item[data-command="{RISE_SLIDESHOW}"]')).to_have_count(1)
    screenshot(page, ARTIFACTS / "rise_in_command_palette.png")
