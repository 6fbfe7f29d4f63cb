"""Files without lines: Parquet (read with pyarrow, a batch at a time) and the directories
that ``datasets``' save_to_disk writes (loaded with datasets, memory-mapped). Both libraries
are imported only when such a file is read."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import os
from collections.abc import Iterator
from typing import Any

from caitool.errors import CaitoolError
from caitool.imports.rows import Mismatch, Row

BATCH = 512


def _columnar(batches: Iterator[dict[str, list[Any]]], source: str) -> Iterator[Row]:
    number = 0
    for batch in batches:
        names = list(batch)
        for cells in zip(*batch.values()):
            number += 1
            row = Row({}, source, row=number)
            try:
                row.values = {name: plain(cell) for name, cell in zip(names, cells)}
            except Mismatch as exc:
                raise row.error(str(exc)) from None
            yield row


def parquet(path: str) -> Iterator[Row]:
    import pyarrow
    import pyarrow.parquet

    try:
        file = pyarrow.parquet.ParquetFile(path)
        batches = (batch.to_pydict() for batch in file.iter_batches(batch_size=BATCH))
        yield from _columnar(batches, path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise CaitoolError(f"{path}: not a readable Parquet file ({exc})") from None


def dataset_dir(path: str) -> Iterator[Row]:
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        try:
            with open(os.path.join(path, "dataset_dict.json")) as handle:
                splits = json.load(handle).get("splits") or []
        except (OSError, ValueError, AttributeError):
            splits = []
        names = ", ".join(map(str, splits)) or "?"
        raise CaitoolError(f"{path}: a datasets DatasetDict (splits: {names}); import one split's "
                           f"directory, e.g. {os.path.join(path, str(splits[0]) if splits else 'train')}")
    if not os.path.isfile(os.path.join(path, "state.json")):
        raise CaitoolError(f"{path}: a directory, but not one that datasets' save_to_disk wrote "
                           "(no state.json); give a file or such a directory")
    import datasets

    try:
        dataset = datasets.load_from_disk(path)
    except Exception as exc:  # datasets raises many kinds for a damaged directory
        raise CaitoolError(f"{path}: cannot load it with datasets ({str(exc).splitlines()[0]})") from None
    yield from _columnar(dataset.iter(batch_size=BATCH), path)


def plain(value: Any) -> Any:
    """A cell of a columnar file as JSON: dates as ISO text, decimals as numbers; a value
    JSON cannot hold (bytes, an image) is a Mismatch."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Mismatch(f"a value of {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return plain(float(value))
    raise Mismatch(f"a {type(value).__name__} value, which JSON cannot hold")
