"""JSONL on object storage or another file system named by a URI (``s3://``, ``gs://``,
``hdfs://``, ``file://``), for ``--ray`` runs.

Input: Ray Data reads the JSONL files under the URI (in parallel, across the cluster) and
hands them to this process whole, in a fixed order; each line is then parsed and checked
by caitool's own reader, so a bad line is still named by file and line. Output: a
directory of shards, ``part-<run>-<n>.jsonl``, each a whole object once closed (an object
store shows no partly written object); ``--resume`` reads the ids of every shard there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from caitool.errors import CaitoolError, InputError
from caitool.io import values
from caitool.io.jsonl import Validator, ids_in, parse_lines

Record = dict[str, Any]
SHARD_RECORDS = 1000  # records per output shard: small enough that a kill loses little


def _filesystem(uri: str) -> tuple[Any, str]:
    import pyarrow.fs

    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a URI it cannot open
        raise CaitoolError(f"{uri}: cannot open it ({str(exc).splitlines()[0]})") from None


def iter_uri_records(uri: str, validate: Validator | None = None,
                     skip_invalid: bool = False,
                     on_skip: Callable[[InputError], None] | None = None,
                     ) -> Iterator[tuple[int, Record]]:
    """``(line number, record)`` from ``uri``, a JSONL file or a directory of them, file by
    file in path order (so that batches, and with them the seeds, are the same each run)."""
    import ray.data  # Ray itself is connected by the Ray executor before the loop reads

    paths = _jsonl_files(uri)
    if not paths:
        return
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    # The reads hold no CPU: the replicas may hold them all, and reading only waits on I/O.
    files = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0)
    files.context.execution_options.preserve_order = True
    for row in files.iter_rows():
        yield from parse_lines(bytes(row["bytes"]).split(b"\n"), str(row["path"]), validate,
                               skip_invalid, on_skip)


def _jsonl_files(uri: str) -> list[str]:
    """The JSONL files ``uri`` names, as URIs Ray Data reads, sorted."""
    import pyarrow.fs

    fs, root = _filesystem(uri)
    scheme = uri.split("://", 1)[0]
    info = fs.get_file_info(root)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise CaitoolError(f"{uri}: no such file or directory")
    if info.type == pyarrow.fs.FileType.File:
        return [uri]
    found = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
    paths = sorted(i.path for i in found
                   if i.type == pyarrow.fs.FileType.File and i.base_name.endswith(".jsonl"))
    return [f"{scheme}://{path}" if scheme != "file" else f"file://{path}" for path in paths]


def done_ids_under(uri: str) -> set[str]:
    """The ids in every shard already under ``uri`` (a torn last line is not done)."""
    ids: set[str] = set()
    for path, data in _shards(uri):
        ids |= ids_in(data.split(b"\n"), path)
    return ids


def _shards(uri: str) -> Iterator[tuple[str, bytes]]:
    import pyarrow.fs

    fs, root = _filesystem(uri)
    selector = pyarrow.fs.FileSelector(root, allow_not_found=True)
    for info in sorted(fs.get_file_info(selector), key=lambda i: i.path):
        if info.type == pyarrow.fs.FileType.File and info.base_name.endswith(".jsonl"):
            with fs.open_input_stream(info.path) as handle:
                yield info.path, handle.read()


class ShardWriter:
    """Writes batches of records to new shards under ``uri``; the same ``write`` as
    :class:`~caitool.io.jsonl.RecordWriter`. One run per output directory: object storage
    has no lock to refuse a second one."""

    def __init__(self, uri: str, append: bool = False):
        import pyarrow.fs

        self.uri = uri.rstrip("/")
        self.name = self.uri
        self.written = 0
        self._fs, self._root = _filesystem(self.uri)
        self._local = isinstance(self._fs, pyarrow.fs.LocalFileSystem)
        if not append and any(True for _ in _shards(self.uri)):
            raise CaitoolError(f"-o {uri}: already holds JSONL shards; add --resume to go on "
                               "with that run, or write to another directory")
        try:
            self._fs.create_dir(self._root, recursive=True)
        except Exception as exc:  # noqa: BLE001 - object stores create prefixes implicitly
            if self._local:
                raise CaitoolError(f"-o {uri}: cannot write there ({exc})") from None
        self._run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._count = 0
        self._lines: list[bytes] = []

    def write(self, records: Any, unwritable: dict[str, str] | None = None) -> int:
        lines = []
        for index, record in enumerate(records):
            try:
                lines.append((values.dumps(record) + "\n").encode("utf-8"))
            except (ValueError, TypeError, RecursionError) as exc:
                why = values.problem(record) or str(exc)
                if unwritable is None:
                    raise CaitoolError(f"{self.name}: cannot write a record: {why}") from None
                unwritable[str(record.get("id", index))] = f"cannot be written as JSON: {why}"
        self._lines += lines
        if len(self._lines) >= SHARD_RECORDS:
            self.flush()
        return len(lines)

    def flush(self) -> None:
        """The lines held so far as one new shard."""
        if not self._lines:
            return
        name = f"part-{self._run}-{self._count:05d}.jsonl"
        final = f"{self._root}/{name}"
        # On a plain file system a half-written file would be visible: write aside, then move.
        target = f"{self._root}/.{name}.tmp" if self._local else final
        try:
            with self._fs.open_output_stream(target) as out:
                out.write(b"".join(self._lines))
            if self._local:
                self._fs.move(target, final)
        except Exception as exc:  # noqa: BLE001 - storage errors in one line
            raise CaitoolError(f"cannot write {self.uri}/{name}: {str(exc).splitlines()[0]} "
                               f"(the {self.written} records in earlier shards are kept)") from None
        self.written += len(self._lines)
        self._count += 1
        self._lines = []

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
