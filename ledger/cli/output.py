"""Rendering: JSON for jobs (stdout), rich tables for people, messages on stderr."""

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# Piped output keeps full-width tables instead of rich's 80-column default for non-terminals.
stdout = Console(width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """One JSON document (or outcome) as one line on stdout, flushed for a reading job."""
    sys.stdout.write(json.dumps(data, ensure_ascii=True) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*("" if v is None else str(v) for v in row))
    return result


def error(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def note(message: str) -> None:
    """A line for people on stderr; user text is never read as rich markup."""
    stderr.print(message, markup=False, highlight=False)


@contextmanager
def progress_bar(label: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A bar on stderr's terminal, fed (position, head); nothing when piped or --quiet."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=quiet or not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(label, total=None)

        def advance(position: int, head: int) -> None:
            progress.update(task, completed=position, total=head)

        yield advance
