"""Small result tables that read well in JupyterLab and in a stored notebook."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence


class Table:
    """Rows of a query or a console command, shown as HTML and as plain text."""

    def __init__(
        self, rows: Iterable[Mapping[str, object]], columns: Sequence[str] | None = None, title: str = ""
    ) -> None:
        self.rows = [dict(row) for row in rows]
        self.columns = list(columns) if columns else (list(self.rows[0]) if self.rows else [])
        self.title = title

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def column(self, name: str) -> list[object]:
        return [row.get(name) for row in self.rows]

    def where(self, **equal: object) -> Table:
        """The rows whose columns equal the given values."""
        return Table([r for r in self.rows if all(r.get(k) == v for k, v in equal.items())], self.columns, self.title)

    def __repr__(self) -> str:
        cells = [[str(row.get(c, "")) for c in self.columns] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]

        def line(values):
            return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

        out = ([self.title] if self.title else []) + [line(self.columns), line("-" * w for w in widths)]
        return "\n".join(out + [line(r) for r in cells] + [f"({len(cells)} rows)"])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in self.columns) + "</tr>"
            for r in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
