"""Streaming JSONL: read records with line numbers, write whole batches, resume.

Reading is strict (a bad line is an :class:`InputError` naming the file and line) unless
``skip_invalid`` is set. Writing emits whole lines only and flushes each batch at once, so a
downstream command in a pipe starts work before this one ends.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import jsonlines

from caitool.errors import CaitoolError, InputError

Validator = Callable[[dict[str, Any]], "str | None"]


def source_name(path: str | None) -> str:
    return "<stdin>" if path in (None, "-") else str(path)


@contextmanager
def open_binary(path: str | None) -> Iterator[BinaryIO]:
    if path in (None, "-"):
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise CaitoolError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaitoolError(f"{path}: is a directory, not a JSONL file") from None
    except PermissionError:
        raise CaitoolError(f"{path}: permission denied") from None
    with handle:
        yield handle


def parse_line(raw: bytes, source: str, lineno: int) -> dict[str, Any] | None:
    """One JSONL line as a dict; None for a blank line; InputError otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(source, lineno, f"invalid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InputError(source, lineno, f"expected a JSON object, got {type(value).__name__}")
    return value


def iter_records(
    path: str | None,
    validate: Validator | None = None,
    skip_invalid: bool = False,
    on_skip: Callable[[InputError], None] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, record)``; raise InputError at the first bad line unless skipping."""
    source = source_name(path)
    with open_binary(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                record = parse_line(raw, source, lineno)
                if record is None:
                    continue
                problem = validate(record) if validate else None
                if problem:
                    raise InputError(source, lineno, problem)
            except InputError as error:
                if not skip_invalid:
                    raise
                if on_skip:
                    on_skip(error)
                continue
            yield lineno, record


def count_lines(path: str | None) -> int | None:
    """Lines in a regular file (for a progress total); None for pipes."""
    if path in (None, "-") or not os.path.isfile(path):
        return None
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def done_ids(path: str) -> set[str]:
    """Ids already in an output file, dropping a torn last line left by a killed run."""
    file = Path(path)
    if not file.exists():
        return set()
    data = file.read_bytes()
    if data and not data.endswith(b"\n"):
        # A run killed mid-write can leave a partial line; it is redone on resume.
        file.write_bytes(data[: data.rfind(b"\n") + 1])
    ids: set[str] = set()
    with jsonlines.open(path, "r") as reader:
        for value in reader.iter(type=dict, skip_invalid=True):
            if "id" in value:
                ids.add(str(value["id"]))
    return ids


def same_file(a: str | None, b: str) -> bool:
    """Whether path ``b`` is the file ``a`` names (``-``/None: whatever stdin reads), through
    links and /dev/stdin."""
    try:
        if a in (None, "-"):
            mine = os.fstat(sys.stdin.fileno())
            theirs = os.stat(b)
            return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
        return os.path.exists(b) and os.path.samefile(a, b)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False  # no file behind stdin (a pipe, a test's buffer), or nothing there yet


def lock_holder(path: str) -> str | None:
    """The pid holding a lock on ``path``, from /proc/locks (Linux); None if unknown."""
    try:
        inode = os.stat(path).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[5].rsplit(":", 1)[-1] == str(inode):
                return fields[4]
    except OSError:
        pass
    return None


class RecordWriter:
    """Writes batches of records as whole JSON lines to a file or stdout. A file is locked
    for the writer's life: a second run on the same output (say two ``--resume`` runs) would
    write every record twice, so it fails at once instead."""

    def __init__(self, path: str | None = None, append: bool = False):
        self.path = path
        if path in (None, "-"):
            self._handle: TextIO = sys.stdout
            self._owned = False
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Opened for appending, and emptied only once the lock is held: a refused run must
        # not truncate the file another one is writing.
        self._handle = open(path, "a", encoding="utf-8")
        self._owned = True
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.close()
            holder = lock_holder(path)
            by = f"process {holder}" if holder else "another process"
            raise CaitoolError(f"{path} is being written by {by}; wait for it to finish or "
                               "write to another file") from None
        if not append:
            self._handle.truncate(0)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
        if not lines:
            return
        # Hold Ctrl-C back while a batch is written so that only whole lines reach the output.
        blocked = hasattr(signal, "pthread_sigmask")
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._handle.write("".join(lines))
            self._handle.flush()
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def close(self) -> None:
        if self._owned:
            self._handle.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
