"""Showing things in a notebook when there is one, and staying quiet in scripts and tests."""

from __future__ import annotations

from typing import Any


def notebook_display() -> Any:
    """IPython's ``display`` when running in a Jupyter kernel, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    return display if shell is not None and type(shell).__name__ == "ZMQInteractiveShell" else None
