"""Sphinx configuration of the course's web site (built by ``./course site``).

The site is built from the stored notebooks and their outputs; nothing is
executed. Sphinx with MyST-NB and the Sphinx Book Theme (the engine of
Jupyter Book 1) installs from PyPI alone and builds offline; Jupyter Book 2
fetches its theme from the network at build time.
"""

import os

project = "Five Tables"
author = "the Five Tables course"
extensions = ["myst_nb"]
nb_execution_mode = "off"  # the stored outputs are the content
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath", "html_admonition"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]  # widget views: their text twin is shown instead
html_title = "Five Tables"
html_theme = "sphinx_book_theme"
#: Where the course lives on GitHub; Binder's launch buttons are built from it.
#: Set COURSE_REPOSITORY_URL when you publish your own copy.
REPOSITORY_URL = os.environ.get("COURSE_REPOSITORY_URL", "https://github.com/five-tables/five-tables")
html_theme_options = {
    "repository_url": REPOSITORY_URL,
    "repository_branch": os.environ.get("COURSE_REPOSITORY_BRANCH", "main"),
    "path_to_docs": "",
    "use_repository_button": True,
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
}
