"""Everything meant for a person goes to stderr; stdout carries data only."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

stderr = Console(stderr=True, highlight=False)


def quiet() -> bool:
    return os.environ.get("CAITOOL_QUIET", "") not in ("", "0")


def _prefix(command: str) -> str:
    return f"caitool {command}" if command else "caitool"


def info(command: str, message: str) -> None:
    if not quiet():
        stderr.print(f"[dim]{_prefix(command)}:[/dim] {message}", markup=True, soft_wrap=True)


def warn(command: str, message: str) -> None:
    stderr.print(f"{_prefix(command)}: warning: {message}", markup=False, soft_wrap=True)


VERBOSE_ENV = "CAITOOL_VERBOSE"


def verbose() -> bool:
    """Whether the libraries' own logs and deprecation notices are wanted (CAITOOL_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_libraries(command: str) -> None:
    """Keep stderr to caitool's own messages: the libraries' deprecation notices and info
    logs say nothing a user of caitool can act on, and arrive mid-run. What does matter
    caitool says itself; a library warning of another kind is shown as the command's, in
    one line. Set before any library is imported, so nothing heavy is loaded here."""
    if verbose():
        return
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = (str(message).strip().splitlines() or [category.__name__])[0]
        warn(command, text)

    warnings.showwarning = show
    # Loggers with no handler of their own (TRL's, peft's) would reach stderr through
    # logging's last resort, unprefixed.
    root = logging.getLogger()
    if not any(isinstance(handler, logging.NullHandler) for handler in root.handlers):
        root.addHandler(logging.NullHandler())


class WarningHandler(logging.Handler):
    """Shows warnings that library code logs (backends know no command name) as the running
    command's own: ``caitool <command>: warning: ...``."""

    def __init__(self, command: str):
        super().__init__(logging.WARNING)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        warn(self.command, record.getMessage())


def progress_columns(*extra):
    """The columns of every caitool progress bar, plus ``extra`` ones."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), *extra]


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""
    if quiet() or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress(*progress_columns(), console=stderr, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
