"""Writing: whole lines or nothing, and a failure named before the work is done.

A command checks its output paths with :func:`check_writable` before it loads a model, so a
path that cannot be written (a directory, a missing or read-only place, closed stdout) costs
nothing. What can only fail while writing (a full disk, /dev/full) fails in one line, and a
file keeps every line written before, whole: a batch that could not be written completely is
cut off again.
"""

from __future__ import annotations

import fcntl
import io
import os
import signal
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError
from caitool.io import values
from caitool.io.files import replacing

STDOUT_CLOSED = "stdout is closed: nothing could be written there; give -o FILE or redirect stdout"


def stdout_closed() -> bool:
    return sys.stdout is None or bool(getattr(sys.stdout, "closed", False))


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_writable(path: str | None, flag: str | None = "-o") -> None:
    """Fail now if ``path`` (None or '-': stdout) cannot be written: it is a directory, a
    folder on its way is a file, or the place refuses new files. Creates nothing that stays."""
    if path in (None, "-"):
        if stdout_closed():
            raise CaitoolError(STDOUT_CLOSED)
        return
    target = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    if target.is_dir():
        raise CaitoolError(f"{where}: is a directory; name a file")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CaitoolError(f"{where}: {folder} is a file, not a folder")
    try:
        if target.exists():
            # Regular files only: opening a FIFO for writing would wait for a reader, and a
            # device (/dev/full) only fails once written to.
            if stat.S_ISREG(target.stat().st_mode):
                os.close(os.open(target, os.O_WRONLY | os.O_APPEND))
        elif folder == target.parent:
            # The real test (permissions, read-only file systems, /proc): make it, remove it.
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.unlink(target)
        elif not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise CaitoolError(f"{where}: cannot write there ({_reason(exc)})") from None


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


Named = tuple[str, "str | None"]  # (the flag or role, e.g. "--rows"; the path)


def _one_place(a: str, b: str) -> bool:
    """Whether two output paths end in the same place, existing yet or not."""
    if a == "-" or b == "-":
        return a == b
    if os.path.exists(b) and not stat.S_ISREG(os.stat(b).st_mode):
        return False  # /dev/null takes any number of writers
    return os.path.realpath(a) == os.path.realpath(b) or same_file(a, b)


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named] = ()) -> None:
    """Fail now, before any work, if an output cannot be written (:func:`check_writable`),
    is one of the inputs, or is another output: either would destroy what was read or
    written first. Paths of None are not given; '-' is stdin or stdout."""
    given = [(flag, path) for flag, path in outputs if path is not None]
    sources = [(flag, path) for flag, path in inputs if path is not None]
    for index, (flag, path) in enumerate(given):
        check_writable(path, flag)
        if path != "-":
            for role, source in sources:
                if same_file(source, path):
                    named = ("stdin" if source == "-" else f"{role} {source}" if role
                             else source if source != path else "")
                    shown = f" ({named})" if named else ""
                    raise CaitoolError(f"{flag} {path} is the input file{shown}: writing would "
                                       "destroy it; write to another file")
        for other_flag, other in given[:index]:
            if _one_place(other, path):
                where = "stdout" if path == "-" else path
                raise CaitoolError(f"{other_flag} and {flag} both write to {where}: one would "
                                   "overwrite the other; give each its own file")


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


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while a batch is written so that only whole lines reach
    the output; they act as soon as the write is done."""
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _stdout_fd() -> int | None:
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None  # a test's buffer


class RecordWriter:
    """Writes batches of records as whole JSON lines to a file or stdout. A file is locked
    for the writer's life: a second run on the same output (say two ``--resume`` runs) would
    write every record twice, so it fails at once instead."""

    def __init__(self, path: str | None = None, append: bool = False, flag: str | None = None):
        self.path = path
        self.name = "stdout" if path in (None, "-") else str(path)
        self.written = 0
        self._fd: int | None = None
        if path in (None, "-"):
            if stdout_closed():
                raise CaitoolError(STDOUT_CLOSED)
            return
        check_writable(path, flag)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Opened for appending, and emptied only once the lock is held: a refused run
            # must not truncate the file another one is writing.
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            where = f"{flag} {path}" if flag else path
            raise CaitoolError(f"{where}: cannot write there ({_reason(exc)})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()
            holder = lock_holder(path)
            by = f"process {holder}" if holder else "another process"
            raise CaitoolError(f"{path} is being written by {by}; wait for it to finish or "
                               "write to another file") from None
        if not append and stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.ftruncate(self._fd, 0)

    def write(self, records: Iterable[dict[str, Any]],
              unwritable: dict[str, str] | None = None) -> int:
        """Write the records that are valid JSON; the others go into ``unwritable`` (id ->
        why) when given, else end the command. Returns the lines written."""
        lines: list[bytes] = []
        for index, record in enumerate(records):
            try:
                lines.append((values.dumps(record) + "\n").encode("utf-8"))
            except (ValueError, TypeError, RecursionError) as exc:
                why = values.problem(record) or str(exc)
                if unwritable is None:
                    raise CaitoolError(f"{self.name}: cannot write record {index + 1} of the "
                                       f"batch: {why}") from None
                unwritable[str(record.get("id", index))] = f"cannot be written as JSON: {why}"
        if lines:
            with signals_held():
                self._put(b"".join(lines))
            self.written += len(lines)
        return len(lines)

    def _put(self, data: bytes) -> None:
        if self._fd is None:
            self._put_stdout(data)
            return
        start = os.fstat(self._fd).st_size
        try:
            _write_all(self._fd, data)
        except BaseException as exc:
            # No torn line: the batch goes, the lines before stay. (The signals held back
            # here can still reach another thread and interrupt this one.)
            with suppress(OSError):
                os.ftruncate(self._fd, start)
            if not isinstance(exc, OSError):
                raise
            raise CaitoolError(f"cannot write {self.path}: {_reason(exc)} (the {self.written} "
                               "records written before are kept, whole)") from None

    def _put_stdout(self, data: bytes) -> None:
        if stdout_closed():
            raise CaitoolError(STDOUT_CLOSED)
        try:
            sys.stdout.flush()
            fd = _stdout_fd()
            if fd is None:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                _write_all(fd, data)  # unbuffered: nothing left to fail again at exit
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise CaitoolError(f"cannot write to stdout: {_reason(exc)} (after {self.written} "
                               "records)") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_text(path: str | None, text: str, flag: str | None = "-o") -> None:
    """A whole document (a JSON summary) to ``path`` or stdout, or a one-line error; a file
    is replaced only once the new text is all on disk."""
    data = text.encode("utf-8")
    where = f"{flag} {path}" if flag else str(path)
    if path in (None, "-"):
        with RecordWriter(None) as writer, signals_held():
            writer._put(data)
        return
    target = Path(path)
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        try:  # a device or a pipe: no file to replace
            with open(target, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise CaitoolError(f"{where}: cannot write there ({_reason(exc)})") from None
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target) as partial:
            partial.write_bytes(data)
    except OSError as exc:
        raise CaitoolError(f"{where}: cannot write there ({_reason(exc)})") from None
