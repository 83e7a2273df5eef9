"""Collecting what SQLAlchemy's pool logs while a block of code runs.

The pool logs through Python's standard ``logging``, under the logger
``sqlalchemy.pool`` (each pool class has a child logger, such as
``sqlalchemy.pool.impl.AsyncAdaptedQueuePool``). In a notebook we want those
lines as data, to count and print them where they belong, not as a stream on
stderr or stdout. ``pool_log()`` attaches a handler for the duration of a
``with`` block::

    with pool_log() as lines:                    # DEBUG and up, messages only
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    # lines == ["Connection <AdaptedConnection <...>> checked out from pool",
    #           "Connection <AdaptedConnection <...>> being returned to pool", ...]

Three things to know:

* The logger's propagation is switched off for the block, so nothing reaches
  the root logger's handlers (which in a kernel may print to stderr).
* ``create_async_engine(..., echo_pool=True or "debug")`` attaches SQLAlchemy's
  own stdout handler to the pool class's logger when that logger has none,
  and it stays there for the life of the process. While the block runs,
  ``pool_log()`` mutes such handlers on the child loggers (a filter that drops
  every record, removed afterwards), so echoing engines do not print into the
  cell either. They stay attached: a logger without handlers would get a new
  stdout handler from the next pool created with ``echo_pool``.
* SQLAlchemy decides whether to log a connection's checkout *and its return*
  when the connection is checked out. Enter the block before the checkout.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

#: The logger every SQLAlchemy pool logs under (its pool classes use children of it).
POOL_LOGGER = "sqlalchemy.pool"

_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_ADAPTED_CONNECTION = re.compile(r"<AdaptedConnection <.*?>>")


def shorten(line: str) -> str:
    """The line with each ``<AdaptedConnection <... at 0x...>>`` shown as ``<conn>``.

    Memory addresses change on every run and say nothing a reader needs;
    any other ``0x...`` address left over becomes ``0x…``.
    """
    return _ADDRESS.sub("0x…", _ADAPTED_CONNECTION.sub("<conn>", line))


class _ListHandler(logging.Handler):
    """Appends each formatted record to a list."""

    def __init__(self, lines: list[str], level: int, fmt: str, shorten_addresses: bool) -> None:
        super().__init__(level)
        self.lines = lines
        self.setFormatter(logging.Formatter(fmt))
        self._shorten = shorten_addresses

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.lines.append(shorten(text) if self._shorten else text)


def _drop_everything(record: logging.LogRecord) -> bool:
    return False


def _descendants(name: str) -> list[logging.Logger]:
    prefix = name + "."
    return [
        logger
        for logger_name, logger in list(logging.root.manager.loggerDict.items())
        if logger_name.startswith(prefix) and isinstance(logger, logging.Logger)
    ]


@contextlib.contextmanager
def pool_log(
    level: int | str = logging.DEBUG,
    *,
    shorten_addresses: bool = False,
    fmt: str = "%(message)s",
    logger_name: str = POOL_LOGGER,
) -> Iterator[list[str]]:
    """Collect the pool's log lines at ``level`` and above while the block runs.

    Yields the list the lines are appended to (formatted with ``fmt``, by
    default the bare message; ``"%(levelname)s %(message)s"`` adds the
    level). With ``shorten_addresses=True`` connection objects are shown as
    ``<conn>`` (see ``shorten()``). The logger's level, propagation and the
    handlers of its child loggers are restored when the block ends, however
    it ends.
    """
    level = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(level, int):
        raise ValueError(f"level must be a logging level such as logging.DEBUG or 'INFO', got {level!r}")
    lines: list[str] = []
    handler = _ListHandler(lines, level, fmt, shorten_addresses)
    logger = logging.getLogger(logger_name)
    saved_level, saved_propagate = logger.level, logger.propagate
    # Handlers on child loggers (echo_pool's stdout handler) would print before
    # the record reaches ours; they are muted for the block.
    muted = [each for child in _descendants(logger_name) for each in child.handlers]
    for each in muted:
        each.addFilter(_drop_everything)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate
        for each in muted:
            each.removeFilter(_drop_everything)


def echo_handlers(logger_name: str = POOL_LOGGER) -> dict[str, list[logging.Handler]]:
    """The handlers attached to the pool's child loggers, by logger name.

    After an engine is created with ``echo_pool=True`` or ``"debug"`` this
    shows the stdout handler SQLAlchemy added (it prints with a timestamp,
    the level and the logger name).
    """
    return {child.name: list(child.handlers) for child in _descendants(logger_name) if child.handlers}


def remove_echo_handlers(logger_name: str = POOL_LOGGER) -> int:
    """Take every handler off the pool's child loggers; returns how many there were.

    SQLAlchemy adds its stdout handler once and never removes it, so without
    this every later engine that logs at the same level keeps printing.
    """
    removed = 0
    for child in _descendants(logger_name):
        for each in list(child.handlers):
            child.removeHandler(each)
            removed += 1
    return removed
