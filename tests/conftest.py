"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest


@pytest.fixture
def own_work_dir(monkeypatch):
    """A fresh TMPDIR, so stacks started here leave a learner's own stacks alone.

    The servers run as another account when tests run as root, so the
    directory must be enterable by everyone (the stack directories inside
    it are private).
    """
    directory = tempfile.mkdtemp(prefix="five-tables-test-")
    os.chmod(directory, 0o755)
    monkeypatch.setenv("TMPDIR", directory)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def pytest_collection_modifyitems(items):
    """Every notebook runs against the stack: nbval's items get the ``stack`` marker too."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.stack)
