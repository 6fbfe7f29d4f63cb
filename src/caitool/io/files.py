"""Whole files: reading a small one (a constitution, a training config) in bounded time, and
replacing one so that nobody ever sees half of it.

A document to read is read at once, before any work, so anything that is not a regular file is
refused without opening it the usual way: a FIFO would wait forever for a writer, /dev/zero
or /dev/urandom never end. A regular file is read up to a size far beyond any real document
and refused past it, so memory stays bounded whatever the path names.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from caitool.errors import CaitoolError

# Constitutions and configs are a few KiB; Anthropic's released prompt files, the largest
# seen, are under 1 MiB.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_document(path: str, what: str = "file", limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of the regular file ``path``, or a one-line CaitoolError naming it: missing,
    unreadable, not a regular file, or larger than ``limit``."""
    try:
        # O_NONBLOCK: a FIFO swapped in after a check must not block the open either.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CaitoolError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CaitoolError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise CaitoolError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CaitoolError(f"{path}: {_kind(mode)}, not a {what}: give a regular file")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise CaitoolError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if size > limit:
        raise CaitoolError(f"{path}: larger than {limit // (1024 * 1024)} MiB, too large for a "
                           f"{what}")
    return b"".join(chunks)


def read_text(path: str, what: str = "file", limit: int = MAX_DOCUMENT_BYTES) -> str:
    """:func:`read_document` decoded as UTF-8 (a leading BOM dropped), or one line."""
    raw = read_document(path, what, limit)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaitoolError(f"{path}: not UTF-8 text (byte {exc.start})") from None


@contextmanager
def replacing(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A path beside ``target`` to write its new content to. When the block ends without an
    error that file replaces ``target`` in one rename, so a reader, a process writing beside
    this one or a kill sees the old file or the new one, never part of either; on an error
    the partial file is removed and the error goes on. The partial file's name starts with a
    dot and carries the process id, so listings skip it and two writers never share one."""
    target = Path(target)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, target)
    except BaseException:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
