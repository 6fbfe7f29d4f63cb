"""Everything meant for a person goes to stderr; stdout carries data only."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

stderr = Console(stderr=True, highlight=False)


def quiet() -> bool:
    return os.environ.get("CAITOOL_QUIET", "") not in ("", "0")


def info(command: str, message: str) -> None:
    if not quiet():
        stderr.print(f"[dim]caitool {command}:[/dim] {message}", markup=True, soft_wrap=True)


def warn(command: str, message: str) -> None:
    stderr.print(f"caitool {command}: warning: {message}", markup=False, soft_wrap=True)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""
    if quiet() or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
