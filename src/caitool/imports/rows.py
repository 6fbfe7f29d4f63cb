"""A row of an imported file, where it sits, and the errors that name that place.

Text files name a row by the 1-based line it starts on, counted in the decompressed text
(``file:12:``); JSON arrays (often one line), Parquet files and datasets directories by the
1-based row (``file:row 7:``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from caitool.errors import InputError

# No row of the public sets comes near it; a row past it is a broken file or an attack.
MAX_ROW_BYTES = 32 * 1024 * 1024


class Mismatch(ValueError):
    """A row that is not of the shape asked for; its text is the one-line problem."""


class RowError(InputError):
    """Bad input in a file without lines (Parquet, a datasets directory): ``file:row N: ...``."""

    def __init__(self, source: str, row: int, problem: str):
        super().__init__(source, row, problem)
        self.args = (f"{source}:row {row}: {problem}",)


@dataclass
class Row:
    """One row of a file and where it sits: ``line`` for text, ``row`` for its place in a
    JSON array or a columnar file."""

    values: dict[str, Any]
    source: str
    line: int | None = None
    row: int | None = None

    def error(self, problem: str) -> InputError:
        if self.line is None:
            return RowError(self.source, self.row or 0, problem)
        if self.row is not None:
            return InputError(self.source, self.line, f"row {self.row}: {problem}")
        return InputError(self.source, self.line, problem)

    def place(self) -> dict[str, int]:
        return {k: v for k, v in (("line", self.line), ("row", self.row)) if v is not None}
