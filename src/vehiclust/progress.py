"""Progress reporting that the library can call without knowing who listens.

Library code asks ``reporter.task(description, total)`` for a handle and calls ``advance(n)``;
the CLI passes a :class:`RichReporter` (bars with rate and ETA) on a terminal and a
:class:`LineReporter` (one plain line per step every few seconds) into a log or a pipe; tests and
notebooks get the silent default. :class:`WarningTally` keeps third-party warnings out of the
progress and summarises them once at the end.
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Protocol


class TaskHandle(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int | None) -> contextlib.AbstractContextManager[TaskHandle]: ...

    def message(self, text: str) -> None: ...


class _NullHandle:
    def advance(self, n: int = 1) -> None:
        pass


class NullReporter:
    """Reports nothing (library default)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        yield _NullHandle()

    def message(self, text: str) -> None:
        pass


def _rate_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second; rich's own speed columns only know bytes."""

        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f}/s" if speed else "", style="progress.data.speed")

    return RateColumn


class RichReporter:
    """Rich progress bars with count, rate and ETA, one per task."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        RateColumn = _rate_column()
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total)

            class _Handle:
                def advance(self, n: int = 1) -> None:
                    progress.advance(task_id, n)

            yield _Handle()

    def message(self, text: str) -> None:
        self.console.print(text)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(description: str, done: int, total: int | None, elapsed: float) -> str:
    """``describe: 4,096/10,000 (41%)  52.1/s  elapsed 1:18``; the count alone without a total."""
    count = f"{done:,}/{total:,} ({done / total:.0%})" if total else f"{done:,}"
    rate = f"  {done / elapsed:,.1f}/s" if elapsed > 0 and done else ""
    return f"{description}: {count}{rate}  elapsed {_clock(elapsed)}"


class LineReporter:
    """Plain lines for output that is not a terminal (CI logs, ``make run | tee``): one when a
    step starts, one at most every ``every_s`` seconds while it runs, one when it ends. Rich's
    bars redraw in place, which a log keeps only as one truncated line at the end."""

    def __init__(self, write: Callable[[str], None], every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.write, self.every_s, self.clock = write, every_s, clock

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        reporter, started = self, self.clock()
        reporter.write(f"{description}: started" + (f", {total:,} to do" if total else ""))

        class _Handle:
            done, last_line = 0, started

            def advance(self, n: int = 1) -> None:
                self.done += n
                now = reporter.clock()
                if now - self.last_line >= reporter.every_s:
                    self.last_line = now
                    reporter.write(progress_line(description, self.done, total, now - started))

        handle = _Handle()
        yield handle
        reporter.write(progress_line(description, handle.done, total, reporter.clock() - started) + ", done")

    def message(self, text: str) -> None:
        self.write(STYLE_TAGS.sub("", text))  # a log gets the words, not the styles


# Only the styles vehiclust's own messages use: rich's markup parser would also eat bracketed
# words that belong to the text ("[abc]" in a path).
STYLE_TAGS = re.compile(r"\[(?:/|/?(?:bold|dim|italic|red|green|yellow|blue|cyan|magenta)(?: [a-z]+)*)\]")


def reporter_for(console) -> Reporter:
    """Bars on a terminal, plain lines elsewhere."""
    if console.is_terminal:
        return RichReporter(console)
    return LineReporter(lambda text: console.print(text, highlight=False, soft_wrap=True, markup=False))


class WarningTally:
    """Counts the warnings Python would show (its filters still decide which) instead of printing
    them between progress lines; :meth:`summary` names each kind once with its count."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._saved = None

    def record(self, message, category, filename, lineno, file=None, line=None) -> None:
        first_line = str(message).strip().splitlines()[0] if str(message).strip() else ""
        self.counts[(category.__name__, first_line[:160])] += 1

    def install(self) -> WarningTally:
        self._saved = warnings.showwarning
        warnings.showwarning = self.record
        return self

    def uninstall(self) -> None:
        if self._saved is not None:
            warnings.showwarning, self._saved = self._saved, None

    def summary(self) -> list[str]:
        if not self.counts:
            return []
        total = sum(self.counts.values())
        lines = [f"{total} warning{'s' if total > 1 else ''} from the libraries vehiclust uses:"]
        for (kind, text), count in self.counts.most_common():
            lines.append(f"  {count} x {kind}: {text}")
        return lines
