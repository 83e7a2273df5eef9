"""support/stack runs outside the kernel (the keeper, ./course, Binder's start script): standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

STACK = Path(__file__).resolve().parents[2] / "support" / "stack"


def top_level_imports(path: Path) -> set[str]:
    """Modules a file imports at module level (lazy imports inside functions are allowed)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_stack_modules_import_only_the_standard_library_and_each_other():
    files = sorted(STACK.glob("*.py"))
    assert len(files) >= 8, "support/stack moved?"
    outside = {
        f.name: sorted(n for n in top_level_imports(f) if n not in sys.stdlib_module_names and n != "__future__")
        for f in files
    }
    assert {name: mods for name, mods in outside.items() if mods} == {}


def test_stack_never_imports_lab_or_lessons():
    for f in STACK.glob("*.py"):
        source = f.read_text()
        assert "..lab" not in source and "..lessons" not in source, f.name
        assert "support.lab" not in source and "support.lessons" not in source, f.name
