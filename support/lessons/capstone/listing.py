"""The service's source, section by section, for reading in the notebook.

``service.py`` is divided by comment lines such as ``# ---- /catalog``;
``section("/catalog")`` is the code from that line to the next one, shown
with syntax highlighting in a notebook (IPython's ``Code``) and as plain
text elsewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

from IPython.display import Code

from . import service

_MARK = re.compile(r"^# -{4,} (.+)$")


def sections() -> dict[str, str]:
    """Every section of service.py by its name, in file order (the module docstring and imports left out)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in Path(service.__file__).read_text().splitlines():
        mark = _MARK.match(line)
        if mark:
            current = found.setdefault(mark.group(1).strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip("\n") for name, lines in found.items()}


def section(*names: str) -> Code:
    """The named sections of the service's source, highlighted."""
    known = sections()
    missing = [name for name in names if name not in known]
    if missing:
        raise KeyError(f"no section {missing} in service.py; there are {list(known)}")
    return Code("\n\n\n".join(known[name] for name in names), language="python")
