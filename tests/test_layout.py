"""support/ stays a house a contributor can find their way in: three parts, small modules."""

from __future__ import annotations

from pathlib import Path

SUPPORT = Path(__file__).resolve().parents[1] / "support"


def test_support_has_its_three_parts_and_nothing_loose() -> None:
    parts = sorted(p.name for p in SUPPORT.iterdir() if p.is_dir() and not p.name.startswith("__"))
    assert parts == ["lab", "lessons", "stack"]
    assert sorted(p.name for p in SUPPORT.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_no_module_is_longer_than_350_lines() -> None:
    long = {
        str(p.relative_to(SUPPORT)): n for p in SUPPORT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 350
    }
    assert long == {}, "split these by job"
