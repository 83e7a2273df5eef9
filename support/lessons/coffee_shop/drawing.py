"""Drawing the café of notebook 01: a strip of frames and, in a live kernel, a slider.

The frames come from ``CafeDay.frame_at()``; nothing here changes the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .model import CafeDay, _fmt

_LEAKER, _GUEST, _WAITING, _GONE = "tab:red", "tab:blue", "tab:orange", "0.6"


def _layout(day: CafeDay) -> tuple[int, float, float]:
    """Width in places, the door's x, and the lowest y of the café, in data units."""
    width = max(day.tables, min(day.standing, 5), 3)
    rows = math.ceil(day.standing / 5) if day.standing else 0
    bottom = -1.45 - (rows - 1) * 0.8 if rows else -0.5
    return width, width + 0.3, bottom


def draw_frame(day: CafeDay, time: float, ax) -> None:
    """Draw the café at ``time`` on ``ax``: tables, standing places, the door line."""
    from matplotlib.patches import Circle, Rectangle

    frame = day.frame_at(time)
    never = {c.name for c in day.customers if c.never_leaves}
    width, door_x, bottom = _layout(day)
    ax.set_xlim(-0.2, door_x + 2.0)
    ax.set_ylim(bottom - 1.0, 0.75)
    ax.set_aspect("equal")
    ax.axis("off")

    def person(x: float, y: float, name: str, color: str) -> None:
        ax.add_patch(Circle((x, y), 0.3, color=color, zorder=3))
        ax.text(x, y, name, ha="center", va="center", color="white", fontsize=7, fontweight="bold", zorder=4)

    for i, name in enumerate(frame.tables):
        x = 0.5 + i
        ax.add_patch(Rectangle((x - 0.42, -0.42), 0.84, 0.84, facecolor="#f3e3c7", edgecolor="#8b5a2b", linewidth=1))
        if name is not None:
            person(x, 0, name, _LEAKER if name in never else _GUEST)
    for i, name in enumerate(frame.standing):
        x, y = 0.5 + i % 5, -1.0 - (i // 5) * 0.8
        ax.add_patch(Circle((x, y), 0.34, fill=False, edgecolor="0.55", linestyle=(0, (2, 2))))
        if name is not None:
            person(x, y, name, _LEAKER if name in never else _GUEST)
    ax.plot([door_x, door_x], [0.5, bottom], color="0.3", linewidth=2)
    ax.text(door_x + 0.1, 0.55, "door", fontsize=6, color="0.3")
    per_column = max(2, int((0.5 - bottom) / 0.7))
    shown = frame.door[: 2 * per_column]
    for i, name in enumerate(shown):
        person(door_x + 0.6 + (i // per_column) * 0.7, -(i % per_column) * 0.7, name, _WAITING)
    if len(frame.door) > len(shown):
        ax.text(door_x + 1.0, bottom - 0.1, f"+{len(frame.door) - len(shown)} more", ha="center", va="top", fontsize=6)
    notes = []
    if frame.gave_up:
        notes.append("gave up: " + " ".join(frame.gave_up))
    if frame.left:
        notes.append("left: " + " ".join(frame.left))
    ax.text(-0.1, bottom - 0.35, "\n".join(notes), fontsize=6, color=_GONE, va="top")
    ax.set_title(f"t = {_fmt(time)}  ({frame.inside} inside, {len(frame.door)} at the door)", fontsize=7)


def draw_strip(day: CafeDay, times: Sequence[float] | None = None, *, columns: int = 4):
    """A strip of small frames, one per time in ``times`` (default: every event time)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    times = list(times) if times is not None else [frame.time for frame in day.frames]
    columns = max(1, min(columns, len(times)))
    rows = math.ceil(len(times) / columns)
    _, door_x, bottom = _layout(day)
    width, height = door_x + 2.2, 1.75 - bottom + 0.4
    scale = 2.6 / width
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(columns * width * scale, rows * height * scale + 0.3),
        squeeze=False,
        layout="constrained",
    )
    for ax, time in zip(axes.flat, times):
        draw_frame(day, time, ax)
    for ax in list(axes.flat)[len(times) :]:
        ax.axis("off")
    legend = [
        Line2D([], [], marker="o", linestyle="", color=color, label=label)
        for color, label in ((_GUEST, "customer"), (_LEAKER, "never leaves"), (_WAITING, "waiting at the door"))
    ]
    legend += [
        Line2D([], [], marker="s", linestyle="", markerfacecolor="#f3e3c7", markeredgecolor="#8b5a2b", label="table"),
        Line2D(
            [], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.55", label="standing place"
        ),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=5 if columns >= 3 else 2, fontsize=7, frameon=False)
    return fig


def show_slider(day: CafeDay, times: Sequence[float] | None = None) -> bool:
    """A slider over the frames, if ipywidgets is installed; False when it is not.

    Where no widget front end runs (a static page, CI) the widget shows as a
    one-line note instead of its default text, and the strip drawn before it
    already shows every frame.
    """
    try:
        import ipywidgets as widgets
        import matplotlib.pyplot as plt
        from IPython.display import display
    except ImportError:
        return False
    times = list(times) if times is not None else [frame.time for frame in day.frames]
    slider = widgets.SelectionSlider(
        options=[(f"t = {_fmt(t)}", t) for t in times], description="time", continuous_update=False
    )

    def draw(time: float) -> None:
        fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
        draw_frame(day, time, ax)
        plt.show()

    output = widgets.interactive_output(draw, {"time": slider})
    box = widgets.VBox([slider, output])
    bundle = box._repr_mimebundle_()
    bundle["text/plain"] = (
        "[a slider over the frames: it needs a live kernel and a widget "
        "front end such as JupyterLab; the strip above shows the same frames]"
    )
    display(bundle, raw=True)
    return True
