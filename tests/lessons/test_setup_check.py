"""Notebook 00's install check: PASS and FIX lines, from the standard library only."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

from support.lessons import setup_check


def test_pins_are_read_without_comments_or_markers(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# a comment\nSQLAlchemy==2.1.9\nsoupsieve==2.5 ; python_version < '3.12'  # marker\n"
        "httpx>=0.28\nasyncpg == 0.32.0\n"
    )
    assert setup_check.pinned_versions(requirements) == {"sqlalchemy": "2.1.9", "soupsieve": "2.5", "asyncpg": "0.32.0"}


def test_a_package_passes_only_at_its_pinned_version():
    assert setup_check.package_check("httpx", "0.28.1", "0.28.1").line == "PASS  httpx 0.28.1"
    wrong = setup_check.package_check("httpx", "0.28.1", "0.27.0")
    assert not wrong.ok and wrong.line.startswith("FIX   httpx: 0.27.0, the course is tested with 0.28.1")
    missing = setup_check.package_check("httpx", "0.28.1", None)
    assert not missing.ok and "not installed" in missing.line and "pip install -r requirements.txt" in missing.line
    unpinned = setup_check.package_check("httpx", None, "0.28.1")
    assert not unpinned.ok and "does not pin" in unpinned.line


def test_python_older_than_3_11_gets_a_fix_line():
    assert setup_check.python_check((3, 11, 2)).line == "PASS  Python 3.11.2"
    old = setup_check.python_check((3, 9, 6))
    assert not old.ok and old.line.startswith("FIX   Python 3.9.6")


def test_install_checks_put_python_first_and_read_the_installed_versions(tmp_path: Path):
    installed = importlib.metadata.version("pytest")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"pytest=={installed}\nno-such-package-here==1.0\n")
    checks = setup_check.install_checks(requirements, names=("pytest", "no-such-package-here"))
    assert [check.name for check in checks] == ["python", "pytest", "no-such-package-here"]
    assert [check.ok for check in checks] == [True, True, False]


def test_the_checked_packages_are_all_pinned_in_the_course_requirements():
    pins = setup_check.pinned_versions()
    assert all(name in pins for name in setup_check.CHECKED)


def test_the_check_imports_only_the_standard_library():
    """It must run in a broken environment: a missing package is a FIX line, not an ImportError."""
    tree = ast.parse(Path(setup_check.__file__).read_text())
    nodes = list(ast.walk(tree))
    imported = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "importlib", "sys", "dataclasses", "pathlib"}
