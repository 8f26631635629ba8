"""Progress reporting that the library can call without knowing who listens.

Library code asks ``reporter.task(description, total)`` for a handle and calls ``advance(n)``;
the CLI passes a :class:`RichReporter` (bars with rate and ETA), tests and notebooks get the
silent default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
