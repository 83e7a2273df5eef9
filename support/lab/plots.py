"""The course's recurring pictures: the pool over time, and request latencies."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .load import LoadResult
from .pool_recorder import PoolRecorder


def _axes(ax: Axes | None, size: tuple[float, float] = (7, 3)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=size, layout="constrained")[1]


def _label(ax: Axes, xlabel: str, ylabel: str, title: str) -> Axes:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_checked_out(
    recorder: PoolRecorder,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    ax: Axes | None = None,
    title: str = "Connections checked out",
) -> Axes:
    """A step plot of checked-out connections, with the pool's limits drawn in."""
    ax = _axes(ax)
    times, counts = recorder.timeline()
    ax.step(times, counts, where="post", color="tab:blue", label="checked out")
    if pool_size is not None:
        ax.axhline(pool_size, color="tab:green", linestyle="--", label=f"pool_size = {pool_size}")
        if max_overflow is not None:
            ax.axhline(
                pool_size + max_overflow,
                color="tab:red",
                linestyle="--",
                label=f"pool_size + max_overflow = {pool_size + max_overflow}",
            )
    return _label(ax, "seconds", "connections", title)


def plot_latencies(result: LoadResult, *, ax: Axes | None = None, title: str = "Request latency") -> Axes:
    """Latency of each request against when it started, failures in red."""
    ax = _axes(ax)
    ok = [r for r in result.records if r.ok]
    failed = [r for r in result.records if not r.ok]
    ax.scatter([r.started_at for r in ok], [r.latency for r in ok], s=8, color="tab:blue", label=f"ok ({len(ok)})")
    ax.scatter(
        [r.started_at for r in failed],
        [r.latency for r in failed],
        s=8,
        color="tab:red",
        label=f"failed ({len(failed)})",
    )
    return _label(ax, "request started at (s)", "latency (s)", title)
