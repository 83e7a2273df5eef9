"""The load generator's progress display: a bar while a run lasts, a finished line afterwards.

In a notebook the bar is one display updated in place, so a stored notebook
shows how the run ended, never a bar frozen part-way; in a terminal it is a
tqdm bar on stderr. Runs shorter than two seconds show nothing: a bar would
only flicker.
"""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm

from .display import notebook_display

#: Runs shorter than this get no progress bar: it would only flicker.
_PROGRESS_AFTER_SECONDS = 1.0


class Progress:
    """A progress bar for runs long enough to deserve one.

    Any run still going after 1 s gets a bar, counting the requests already
    done: how long a run takes depends on the server. An open loop that will
    run for more than 1 s anyway (expected_seconds) shows its bar from the
    start. In a notebook the bar is one display that is updated in place and
    ends as a finished line ("40/40 requests in 3.1 s"), so a stored notebook
    never shows a bar frozen part-way; elsewhere it is a tqdm bar on stderr.
    """

    def __init__(self, total: int, description: str, expected_seconds: float | None) -> None:
        self._total = total
        self._description = description
        self._started = time.perf_counter()
        self._done = 0
        self._bar: tqdm | None = None
        self._handle: Any = None
        self._shown_at = 0.0
        if expected_seconds is not None and expected_seconds > _PROGRESS_AFTER_SECONDS:
            self._show()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._handle is not None:
            self._handle.update(_progress_bundle(self._description, self._done, self._total, self._elapsed()), raw=True)

    def advance(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update()
        elif self._handle is not None:
            if time.perf_counter() - self._shown_at > 0.2 or self._done == self._total:  # a few updates a second
                self._shown_at = time.perf_counter()
                self._handle.update(_progress_bundle(self._description, self._done, self._total), raw=True)
        elif time.perf_counter() - self._started > _PROGRESS_AFTER_SECONDS:
            self._show()

    def _elapsed(self) -> float:
        return time.perf_counter() - self._started

    def _show(self) -> None:
        display = notebook_display()
        if display is None:
            self._bar = tqdm(total=self._total, initial=self._done, desc=self._description, leave=False)
        else:
            self._shown_at = time.perf_counter()
            bundle = _progress_bundle(self._description, self._done, self._total)
            self._handle = display(bundle, raw=True, display_id=True)


def _progress_bundle(description: str, done: int, total: int, finished_after: float | None = None) -> dict[str, str]:
    """An HTML progress bar and its plain-text twin; once finished, a line that says how long it took."""
    if finished_after is not None:
        text = f"{description}: {done}/{total} requests in {finished_after:.1f} s"
        return {"text/plain": text, "text/html": f"<code>{text}</code>"}
    text = f"{description}: {done}/{total} requests ..."
    html = f'<progress value="{done}" max="{total}" style="width: 20em"></progress> <code>{text}</code>'
    return {"text/plain": text, "text/html": html}
