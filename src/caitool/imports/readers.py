"""Opening a file of rows, whatever it is: JSON Lines, one JSON array, CSV/TSV, plain text,
Parquet, or a directory that ``datasets``' save_to_disk wrote; gzip, bzip2, xz or zstd
compressed (zstd when the ``zstandard`` package is there).

The type is told by the file's content first (compression and Parquet by their magic bytes,
a JSON array by its opening bracket), then by its name (``.csv``, ``.tsv``), then by the
fallback the caller names (what a generic format expects of stdin or an unknown suffix).

Each row comes with where it sits (:class:`rows.Row`: a line, or a row of a file without lines).

Each row is bounded (:data:`rows.MAX_ROW_BYTES`) and read as a stream, so a huge file or a
decompression bomb costs time in proportion to its size and memory in proportion to a row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, BinaryIO

from caitool.errors import CaitoolError, InputError
from caitool.imports import columnar, json_array
from caitool.imports.rows import MAX_ROW_BYTES, Mismatch, Row, RowError
from caitool.io import jsonl

__all__ = ["MAX_ROW_BYTES", "Mismatch", "Row", "RowError", "check_path", "rows"]

CHUNK = 1024 * 1024
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zstd"}
SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zstd")


OnSkip = Callable[[InputError], None]


# -- what a path is ----------------------------------------------------------------------


def check_path(path: str) -> str:
    """The path's kind before anything is read: 'stdin', 'file' or 'dir'; a one-line error
    for a missing path or one that is no regular file (a FIFO or a device never ends, or
    waits for a writer)."""
    if path == "-":
        if jsonl.stdin_closed():
            raise CaitoolError(jsonl.STDIN_CLOSED)
        return "stdin"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CaitoolError(f"{path}: no such file") from None
    except OSError as exc:
        raise CaitoolError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        return "dir"
    if not stat.S_ISREG(mode):
        what = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if (
            stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) else "a socket or other special file"
        raise CaitoolError(f"{path}: is {what}, not a regular file; give a file, or pipe the "
                           "data in as - (stdin)")
    return "file"


def rows(path: str, fallback: str = "json", skip_invalid: bool = False,
         on_skip: OnSkip | None = None) -> Iterator[Row]:
    """The rows of ``path`` (``-``: stdin) as dicts. ``fallback``: the kind to read when
    neither content nor name tells ('json', 'csv', 'text' or 'parquet')."""
    where = check_path(path)
    source = jsonl.source_name(path)
    if where == "dir":
        yield from columnar.dataset_dir(path)
        return
    with ExitStack() as stack:
        handle = stack.enter_context(_open(path)) if where == "file" else _stdin()
        head = _peek(handle, 8)
        if head.startswith(b"PAR1"):
            if where == "stdin":
                raise CaitoolError("<stdin>: Parquet cannot be read from a pipe; give the file")
            stack.close()
            yield from columnar.parquet(path)
            return
        name = "" if where == "stdin" else os.path.basename(path).lower()
        compression = next((kind for magic, kind in COMPRESSED.items() if head.startswith(magic)), None)
        if compression:
            handle = stack.enter_context(_decompressed(handle, compression, source))
            name = name[:-len(next(s for s in SUFFIXES if name.endswith(s)))] if name.endswith(SUFFIXES) else name
        kind = _kind(name, fallback, handle, source)
        if kind == "parquet":
            raise CaitoolError(f"{source}: not a Parquet file (it does not start with PAR1)"
                               + ("; a compressed Parquet file must be decompressed first"
                                  if compression else ""))
        if kind == "json":
            yield from json_array.rows(handle, source)
        elif kind in ("csv", "tsv"):
            yield from _csv(handle, source, "\t" if kind == "tsv" else ",")
        elif kind == "text":
            yield from _text(handle, source)
        else:
            for line, record in jsonl.parse_lines(_bounded_lines(handle, source), source,
                                                  skip_invalid=skip_invalid, on_skip=on_skip):
                yield Row(record, source, line=line)


def _kind(name: str, fallback: str, handle: BinaryIO, source: str) -> str:
    if fallback == "text":
        return "text"
    for suffix, kind in ((".csv", "csv"), (".tsv", "tsv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return kind
    if fallback in ("csv", "parquet") and not name.endswith((".json", ".jsonl", ".ndjson")):
        return fallback
    start = _peek(handle, 4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if start.startswith(b"[") else "jsonl"


# -- opening and decompressing ------------------------------------------------------------


@contextmanager
def _open(path: str) -> Iterator[BinaryIO]:
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise CaitoolError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    with handle:
        yield handle


def _stdin() -> BinaryIO:
    stream = sys.stdin.buffer
    return stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]


def _peek(handle: BinaryIO, size: int) -> bytes:
    """The first bytes, left in place (a regular file seeks back; a pipe is buffered)."""
    if hasattr(handle, "peek"):
        return handle.peek(size)[:size]  # type: ignore[attr-defined]
    start = handle.tell()
    data = handle.read(size)
    handle.seek(start)
    return data


@contextmanager
def _decompressed(handle: BinaryIO, kind: str, source: str) -> Iterator[BinaryIO]:
    if kind == "gzip":
        import gzip

        stream: Any = gzip.GzipFile(fileobj=handle)
    elif kind == "bzip2":
        import bz2

        stream = bz2.BZ2File(handle)
    elif kind == "xz":
        import lzma

        stream = lzma.LZMAFile(handle)
    else:
        try:
            import zstandard
        except ImportError:
            raise CaitoolError(f"{source}: zstd-compressed, and the zstandard package is not "
                               "installed (pip install zstandard, or decompress it first)") from None
        stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(handle), CHUNK)
    with stream:
        yield _Guarded(stream, source, kind)


class _Guarded(io.RawIOBase):
    """A decompressed stream whose corrupt data is one line instead of a library's error."""

    def __init__(self, stream: Any, source: str, kind: str):
        self.stream, self.source, self.kind = stream, source, kind

    def readable(self) -> bool:
        return True

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.stream, name)(*args)
        except (OSError, EOFError, ValueError) as exc:
            raise CaitoolError(f"{self.source}: corrupt {self.kind} data ({exc})") from None

    def readline(self, size: int | None = -1) -> bytes:
        return self._call("readline", -1 if size is None else size)

    def read(self, size: int | None = -1) -> bytes:
        # One step of decompression at a time: a read that runs into damage loses what it
        # had already decompressed, so the rows before the damage must come out first.
        if size is not None and size > 0 and hasattr(self.stream, "read1"):
            return self._call("read1", size)
        return self._call("read", -1 if size is None else size)

    def peek(self, size: int = 1) -> bytes:
        return self._call("peek", size)


def _bounded_lines(handle: BinaryIO, source: str) -> Iterator[bytes]:
    """Lines of at most MAX_ROW_BYTES: a line without end (a stream of zeros) is an error
    once it passes the bound, not a process that fills memory."""
    lineno = 0
    while True:
        raw = handle.readline(MAX_ROW_BYTES + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > MAX_ROW_BYTES:
            raise InputError(source, lineno, f"a line longer than {MAX_ROW_BYTES // 2**20} MiB "
                             "(is this a text file?)")
        yield raw


# -- text files ---------------------------------------------------------------------------


def _text(handle: BinaryIO, source: str) -> Iterator[Row]:
    for lineno, raw in enumerate(_bounded_lines(handle, source), start=1):
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InputError(source, lineno, f"invalid UTF-8 (byte {exc.start})") from None
        if not text:
            continue
        if lineno == 1 and text.startswith("{") and text.endswith("}"):
            try:
                json.loads(text)
            except ValueError:
                pass
            else:
                raise InputError(source, lineno, "a JSON object, not a line of text: import JSON "
                                 "Lines as jsonl (--field names the prompt)")
        yield Row({"text": text}, source, line=lineno)


def _csv(handle: BinaryIO, source: str, delimiter: str) -> Iterator[Row]:
    lines = _decoded_lines(handle, source)
    csv.field_size_limit(MAX_ROW_BYTES)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(source, start, f"not valid CSV ({exc})") from None
        if not fields or fields == [""]:
            continue
        if header is None:
            header = fields
            if len(set(header)) != len(header):
                repeated = next(name for name in header if header.count(name) > 1)
                raise InputError(source, start, f"the header names '{repeated}' twice")
            continue
        if len(fields) != len(header):
            raise InputError(source, start, f"{len(fields)} fields, where the header (line 1) "
                             f"has {len(header)}")
        yield Row(dict(zip(header, fields)), source, line=start)


def _decoded_lines(handle: BinaryIO, source: str) -> Iterator[str]:
    for lineno, raw in enumerate(_bounded_lines(handle, source), start=1):
        try:
            yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(source, lineno, f"invalid UTF-8 (byte {exc.start})") from None




