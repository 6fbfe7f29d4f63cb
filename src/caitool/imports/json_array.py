"""One JSON array of objects, parsed one element at a time by ijson: a file of any length
costs memory for one row (a red-team file is one array, often on one line, so each row is
named by its place: ``file:row N:``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from caitool.imports.rows import MAX_ROW_BYTES, Row, RowError
from caitool.io import values

CHUNK = 1024 * 1024


class _Bounded:
    """The file as ijson reads it, refusing to read further than one row's bound past the
    end of the last row given out: an endless element fails in bounded memory."""

    def __init__(self, handle: BinaryIO, source: str):
        self.handle, self.source = handle, source
        self.read_bytes = self.mark = 0
        self.row = 1

    def read(self, size: int = -1) -> bytes:
        # ijson asks for 0 bytes first, to learn whether the file gives bytes or text.
        data = self.handle.read(CHUNK if size is None or size < 0 else size)
        self.read_bytes += len(data)
        if self.read_bytes - self.mark > MAX_ROW_BYTES + CHUNK:
            raise RowError(self.source, self.row, f"longer than {MAX_ROW_BYTES // 2**20} MiB")
        return data


def rows(handle: BinaryIO, source: str) -> Iterator[Row]:
    """The objects of one JSON array (the caller has seen its opening bracket)."""
    import ijson

    bounded = _Bounded(handle, source)
    index = 0
    try:
        for value in ijson.items(bounded, "item", use_float=True, buf_size=CHUNK):
            index += 1
            yield Row(_checked(value, source, index), source, row=index)
            bounded.mark, bounded.row = bounded.read_bytes, index + 1
    except ijson.JSONError as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RowError(source, index + 1, f"invalid JSON ({problem})") from None


def _checked(value: Any, source: str, index: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RowError(source, index, f"expected a JSON object, got {type(value).__name__}")
    problem = values.problem(value)
    if problem:
        raise RowError(source, index, problem)
    return value
