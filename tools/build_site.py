"""Build the course's web site from the stored notebooks, offline, without executing anything.

The pages are the README (as the home page), the guides in ``docs/``,
CONTRIBUTING.md and every notebook with its stored outputs and figures. The
sources are copied into a staging folder (so links keep the layout they have
in the repository) with a navigation tree added to the home page; Sphinx
then writes HTML. Every warning is an error, so a link to a page that does
not exist fails the build.

    python -m tools.build_site            -> build/site/index.html
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage(source_root: Path, staging: Path) -> list[str]:
    """Copy the site's sources into ``staging``; return the pages in navigation order."""
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "notebooks").mkdir(parents=True)
    shutil.copy(source_root / "site" / "conf.py", staging / "conf.py")
    pages = []
    for notebook in sorted((source_root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy(notebook, staging / "notebooks" / notebook.name)
        pages.append(f"notebooks/{notebook.stem}")
    for guide in sorted((source_root / "docs").glob("*.md")):
        (staging / "docs").mkdir(exist_ok=True)
        shutil.copy(guide, staging / "docs" / guide.name)
        pages.append(f"docs/{guide.stem}")
    if (source_root / "CONTRIBUTING.md").exists():
        shutil.copy(source_root / "CONTRIBUTING.md", staging / "CONTRIBUTING.md")
        pages.append("CONTRIBUTING")
    readme = (source_root / "README.md").read_text(encoding="utf-8")
    toctree = "\n".join(["", "```{toctree}", ":hidden:", ":maxdepth: 1", "", *pages, "```", ""])
    (staging / "index.md").write_text(readme + toctree, encoding="utf-8")
    return pages


def build(output: Path, staging: Path, source_root: Path = ROOT) -> list[str]:
    """Stage and build; raise SystemExit with Sphinx's message when the build fails."""
    from sphinx.cmd.build import build_main

    pages = stage(source_root, staging)
    status = build_main(["-b", "html", "-q", "-W", "--keep-going", "-E", str(staging), str(output)])
    if status != 0:
        raise SystemExit(f"the site did not build (Sphinx exit status {status}); the warnings above say why")
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "site")
    args = parser.parse_args(argv)
    pages = build(args.output, ROOT / "build" / "site-src")
    print(f"{len(pages) + 1} pages: {args.output / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
