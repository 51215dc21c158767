"""Progress bars for long steps: shown by the CLI on stderr, silent everywhere else.

Library code opens a bar with `progress_bar(description, total)` and advances
it. The bars draw only inside `show_progress(True)`, which the CLI enters when
stderr is a terminal or `--progress` is given. Flows run under Prefect's
scheduler, tests and benchmarks get a bar that does nothing.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["ProgressBar", "progress_bar", "show_progress", "stderr_is_terminal"]

_lock = threading.Lock()
_display: Progress | None = None
# Bars open right now, in any thread; nesting decides whether a bar stays.
_open_bars = 0


class ProgressBar:
    """Handle of one bar; every method does nothing when no display is active."""

    def __init__(self, display: Progress | None, task_id: int | None) -> None:
        self._display = display
        self._task_id = task_id

    def advance(self, steps: float = 1) -> None:
        if self._display is not None:
            self._display.advance(self._task_id, steps)

    def update(self, completed: float | None = None, total: float | None = None, description: str | None = None) -> None:
        if self._display is not None:
            self._display.update(self._task_id, completed=completed, total=total, description=description)


def stderr_is_terminal() -> bool:
    """Return True when stderr is an interactive terminal, where bars can redraw in place."""
    return sys.stderr.isatty()


@contextmanager
def show_progress(enabled: bool) -> Iterator[None]:
    """Draw every bar opened inside the block on stderr, if `enabled`.

    On a terminal the bars redraw in place. On anything else (a log file,
    a pipe, a test runner) rich prints each bar's final state once, as
    plain text without terminal control codes, when the block ends.
    """
    global _display
    if not enabled:
        yield
        return
    display = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    # Prefect's console log handlers keep their own rich Console on the real
    # stderr, so their lines would cut through the redrawn bars. While the
    # bars show, they print through the bars' console, above the bars.
    handlers = _prefect_console_handlers()
    saved_consoles = [handler.console for handler in handlers]
    with _lock:
        _display = display
    try:
        for handler in handlers:
            handler.console = display.console
        with display:
            yield
    finally:
        for handler, console in zip(handlers, saved_consoles):
            handler.console = console
        with _lock:
            _display = None


def _prefect_console_handlers() -> list[logging.Handler]:
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(item for item in logging.root.manager.loggerDict.values()
                                      if isinstance(item, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers if isinstance(handler, PrefectConsoleHandler)]


@contextmanager
def progress_bar(description: str, total: float | None) -> Iterator[ProgressBar]:
    """Open a bar of `total` steps (None if unknown) for the block.

    An outer bar stays on screen when its block ends. A bar opened inside
    another is removed when its block ends, so nested loops (epochs inside
    trials) keep one line per level.
    """
    global _open_bars
    with _lock:
        display = _display
        nested = _open_bars > 0
        _open_bars += 1
    try:
        if display is None:
            yield ProgressBar(None, None)
            return
        task_id = display.add_task(description, total=total)
        try:
            yield ProgressBar(display, task_id)
        finally:
            if nested:
                display.remove_task(task_id)
    finally:
        with _lock:
            _open_bars -= 1
