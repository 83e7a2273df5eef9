"""Scraping a /metrics endpoint over time, and alert rules evaluated on what was scraped.

Prometheus does two things with an app's metrics: it scrapes them at a fixed
interval and stores every sample with its time, and it evaluates alert rules
over the stored series. A rule has an expression (``db_pool_waiting > 0``)
and a ``for`` duration: the alert is *pending* while the expression has
been true for less than that, and *fires* once it has been true at every
evaluation for at least that long. A false evaluation, or no sample at all,
resets it. This module does the same, small, inside a notebook:

    async with scrape(served.url + "/metrics", every=0.2) as series:
        ...run load...
    rule = AlertRule("DbPoolWaiting", "db_pool_waiting", above=0, for_seconds=1)
    outcome = evaluate(rule, series, pool="orders")
    outcome.fired_at        # seconds after the scrape started, or None

Rules are evaluated at each scrape, so the scrape interval is the evaluation
interval. Scrapes are parsed with prometheus_client's own text parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .local_http import local_client

CAPACITY_METRIC = "db_pool_capacity"
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

_LabelKey = tuple[tuple[str, str], ...]


@dataclass
class Series:
    """Samples of every metric at each scrape: ``times[i]`` and ``samples[i][(name, labels)]``.

    Times are seconds since ``origin`` (a ``time.perf_counter()`` value).
    A failed scrape is kept as a time with no samples, and its error in
    ``failures``, as Prometheus records ``up == 0``.
    """

    origin: float = field(default_factory=time.perf_counter)
    times: list[float] = field(default_factory=list)
    samples: list[dict[tuple[str, _LabelKey], float]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)

    def now(self) -> float:
        """Seconds since the origin, on the same clock as the samples."""
        return time.perf_counter() - self.origin

    def add(self, at: float, text: str) -> None:
        """Parse one scrape (Prometheus text format) taken ``at`` seconds after the origin."""
        scraped: dict[tuple[str, _LabelKey], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scraped[(sample.name, _key(sample.labels))] = sample.value
        self.times.append(at)
        self.samples.append(scraped)

    def add_failure(self, at: float, error: str) -> None:
        self.times.append(at)
        self.samples.append({})
        self.failures.append((at, error))

    def values(self, name: str, **labels: str) -> tuple[list[float], list[float]]:
        """Times and values of one series; scrapes without it are left out."""
        key = (name, _key(labels))
        pairs = [(t, s[key]) for t, s in zip(self.times, self.samples) if key in s]
        return [t for t, _ in pairs], [v for _, v in pairs]

    def value_at(self, index: int, name: str, **labels: str) -> float | None:
        """The value of one series in scrape ``index``, None when that scrape lacks it."""
        return self.samples[index].get((name, _key(labels)))

    def names(self) -> list[str]:
        """Every sample name seen, sorted."""
        return sorted({name for scraped in self.samples for name, _ in scraped})

    def rate(self, name: str, **labels: str) -> tuple[list[float], list[float]]:
        """Per-second increase of a counter between consecutive scrapes (at the later scrape's time)."""
        times, values = self.values(name, **labels)
        return times[1:], [
            (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0 for t0, t1, v0, v1 in zip(times, times[1:], values, values[1:])
        ]

    def __len__(self) -> int:
        return len(self.times)


def _key(labels: dict[str, str]) -> _LabelKey:
    return tuple(sorted(labels.items()))


@contextlib.asynccontextmanager
async def scrape(
    url: str, *, every: float = 0.2, timeout: float = 5.0, origin: float | None = None
) -> AsyncIterator[Series]:
    """Scrape ``url`` once before the block, every ``every`` seconds while it runs, and once at its end.

    Runs as a task on the current event loop, so the app being scraped can
    be served on the same loop. ``origin`` (a ``time.perf_counter()``
    value) lets several series share one time axis.
    """
    if not every > 0 or not timeout > 0:
        raise ValueError(f"every and timeout must be seconds greater than 0, got every={every!r}, timeout={timeout!r}")
    series = Series(origin=time.perf_counter() if origin is None else origin)
    stop = asyncio.Event()
    async with local_client(url, timeout=timeout) as client:

        async def once() -> None:
            at = series.now()
            try:
                response = await client.get(url)
                response.raise_for_status()
                series.add(at, response.text)
            except (httpx.HTTPError, ValueError) as exc:
                series.add_failure(at, f"{type(exc).__name__}: {exc}")

        async def loop() -> None:
            while True:
                started = time.perf_counter()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, every - (time.perf_counter() - started)))
                if stop.is_set():
                    return
                await once()

        await once()  # the first sample, before the block's load starts
        task = asyncio.create_task(loop(), name=f"scrape {url}")
        try:
            yield series
        finally:
            stop.set()
            await task
            await once()


@dataclass(frozen=True)
class AlertRule:
    """``metric > above`` for at least ``for_seconds``; with ``of_capacity``, ``metric / db_pool_capacity > above``.

    ``for_text`` is what the ``for:`` clause would say in production (the
    notebook shortens it for class); ``summary`` goes into the rule's
    annotations.
    """

    name: str
    metric: str
    above: float
    for_seconds: float
    of_capacity: bool = False
    for_text: str | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"an alert name is letters, digits and _, like DbPoolWaiting; got {self.name!r}")
        if not isinstance(self.metric, str) or not _METRIC_NAME.fullmatch(self.metric):
            raise ValueError(f"metric must be a metric name such as 'db_pool_waiting', got {self.metric!r}")
        for what, value in (("above", self.above), ("for_seconds", self.for_seconds)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{what} must be a number of at least 0, got {value!r}")
        if self.of_capacity and self.above > 1:
            raise ValueError(f"with of_capacity=True, above is a fraction of capacity (0.8 = 80 %), got {self.above!r}")

    @property
    def expr(self) -> str:
        """The PromQL expression."""
        if self.of_capacity:
            return f"{self.metric} / {CAPACITY_METRIC} > {self.above:g}"
        return f"{self.metric} > {self.above:g}"

    def as_prometheus(self) -> str:
        """The rule as it would stand in a Prometheus rules file (one entry of a group's ``rules:``)."""
        lines = [f"- alert: {self.name}", f"  expr: {self.expr}", f"  for: {self.for_text or f'{self.for_seconds:g}s'}"]
        if self.summary:
            lines += ["  annotations:", f'    summary: "{self.summary}"']
        return "\n".join(lines)


@dataclass(frozen=True)
class AlertOutcome:
    """What a rule did over one series: when it first fired (None: never), and the pending streak before it."""

    rule: AlertRule
    fired_at: float | None
    pending_since: float | None
    peak: float | None  # the largest value the rule compared (a fraction with of_capacity)
    firing: tuple[tuple[float, float], ...]  # (from, to) of each firing period, for plots
    evaluations: int
    true_at_end: bool = False  # the condition held at the last evaluation (pending or firing when the series ended)

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def __str__(self) -> str:
        peak = "no samples" if self.peak is None else f"peak {self.peak:.3g}"
        if self.fired_at is None:
            return f"{self.rule.name}: did not fire ({peak}, {self.evaluations} evaluations)"
        return (
            f"{self.rule.name}: fired at {self.fired_at:.2f} s "
            f"(condition true since {self.pending_since:.2f} s; {peak})"
        )


def evaluate(rule: AlertRule, series: Series, **labels: str) -> AlertOutcome:
    """Evaluate ``rule`` at every scrape of ``series``, for the time series with these ``labels``."""
    compared: list[float | None] = []
    for index in range(len(series)):
        value = series.value_at(index, rule.metric, **labels)
        if value is not None and rule.of_capacity:
            capacity = series.value_at(index, CAPACITY_METRIC, **labels)
            value = value / capacity if capacity else None
        compared.append(value)
    if all(value is None for value in compared) and len(series):
        raise ValueError(f"no sample of {rule.metric} with labels {labels} in the series; names seen: {series.names()}")
    fired_at = pending_since = streak = None
    firing: list[tuple[float, float]] = []
    fire_start: float | None = None
    for at, value in zip(series.times, compared):
        if value is not None and value > rule.above:
            streak = at if streak is None else streak
            if at - streak >= rule.for_seconds - 1e-9:
                if fire_start is None:
                    fire_start = at
                if fired_at is None:
                    fired_at, pending_since = at, streak
        else:
            if fire_start is not None:
                firing.append((fire_start, at))
            fire_start = streak = None
    if fire_start is not None:
        firing.append((fire_start, series.times[-1]))
    if fired_at is None and compared:
        pending_since = _first_true(series.times, compared, rule.above)
    peaks = [value for value in compared if value is not None]
    true_at_end = bool(compared) and compared[-1] is not None and compared[-1] > rule.above
    return AlertOutcome(
        rule, fired_at, pending_since, max(peaks) if peaks else None, tuple(firing), len(compared), true_at_end
    )


def _first_true(times: Iterable[float], values: Iterable[float | None], above: float) -> float | None:
    return next((at for at, value in zip(times, values) if value is not None and value > above), None)
