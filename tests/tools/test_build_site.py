"""The web site builds offline from the stored notebooks, with every page, figure and internal link."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tools.build_site import ROOT, build

pytestmark = pytest.mark.stack  # a full Sphinx build: slow, so outside the fast set

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build(out / "html", out / "src")
    return out / "html"


def stored_figures(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


def test_every_notebook_has_a_page_with_its_figures_and_a_binder_link(site: Path) -> None:
    assert (site / "index.html").exists()
    for notebook in NOTEBOOKS:
        page = site / "notebooks" / f"{notebook.stem}.html"
        assert page.exists(), notebook.name
        html = page.read_text()
        figures = [src for src in re.findall(r'<img[^>]* src="([^"]+)"', html) if "/_images/" in src]
        assert len(figures) == stored_figures(notebook), notebook.name
        assert all((page.parent / unquote(src)).resolve().exists() for src in figures)
        assert "mybinder.org/v2/gh/" in html and f"notebooks/{notebook.name}" in html


def test_every_internal_link_resolves(site: Path) -> None:
    checked = 0
    for page in site.rglob("*.html"):
        if "_static" in page.parts:  # the theme's own templates, not pages
            continue
        for target in re.findall(r'(?:href|src)="([^"]+)"', page.read_text()):
            parts = urlsplit(target)
            if parts.scheme or target.startswith(("#", "mailto:", "//")) or not parts.path:
                continue
            assert (page.parent / unquote(parts.path)).resolve().exists(), f"{page.relative_to(site)} -> {target}"
            checked += 1
    assert checked > 100


def test_the_readme_is_the_home_page_and_lists_the_notebooks(site: Path) -> None:
    home = (site / "index.html").read_text()
    assert "Five Tables" in home
    for notebook in NOTEBOOKS:
        assert f"notebooks/{notebook.stem}.html" in home, notebook.name
