"""The batch loop every record command shares: read, skip what is done, process, write."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.jsonl import RecordWriter, Validator, count_lines, done_ids, iter_records
from caitool.options import StreamFlags
from caitool.records import ensure_id

Batch = list[dict[str, Any]]


@dataclass
class StreamStats:
    read: int = 0
    written: int = 0
    skipped_invalid: int = 0
    skipped_done: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)


# Ids (and reasons) of the records that failed for good in the batch being processed.
_failures: ContextVar[dict[str, str] | None] = ContextVar("caitool_failures", default=None)


def record_failed(record: dict[str, Any], reason: str) -> None:
    """Report that ``record`` could not be processed (a request kept failing after its
    retries). The batch loop leaves it out of the output, names it on stderr, finishes the
    other records and exits non-zero at the end; outside the loop this raises."""
    record_id = str(record.get("id"))
    failures = _failures.get()
    if failures is None:
        raise CaitoolError(f"record {record_id}: {reason}")
    failures.setdefault(record_id, reason)


def has_failed(record: dict[str, Any]) -> bool:
    """Whether ``record`` already failed in this batch (so later steps can skip it)."""
    failures = _failures.get()
    return failures is not None and str(record.get("id")) in failures


def _batches(records: Iterator[tuple[int, dict[str, Any]]], size: int) -> Iterator[Batch]:
    """Group records; a bad line ends the stream only after the batch before it is yielded."""
    batch: Batch = []
    while True:
        try:
            _, record = next(records)
        except StopIteration:
            break
        except InputError:
            if batch:
                yield batch
            raise
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``I/N`` (1-based) as (I, N)."""
    if spec is None:
        return None
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise CaitoolError(f"--shard must look like I/N (e.g. 2/8), not '{spec}'") from None
    if not 1 <= index <= count:
        raise CaitoolError(f"--shard {spec}: need 1 <= I <= N")
    return index, count


def in_shard(record_id: str, shard: tuple[int, int] | None) -> bool:
    """Shards split by a hash of the id, so they do not depend on line order or bad lines."""
    if shard is None:
        return True
    digest = hashlib.sha256(record_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0] - 1


def run(
    command: str,
    input: str | None,
    options: StreamFlags,
    process: Callable[[Batch], Batch],
    validate: Validator | None = None,
    describe: str = "records",
) -> StreamStats:
    """Stream ``input`` through ``process`` batch by batch into ``options.output``."""
    if options.batch_size < 1:
        raise CaitoolError("--batch-size must be at least 1")
    if options.resume and options.output in (None, "-"):
        raise CaitoolError("--resume needs -o FILE (it skips the ids already in FILE)")
    stats = StreamStats()
    started = time.perf_counter()

    def skipped(error: InputError) -> None:
        stats.skipped_invalid += 1
        console.warn(command, f"{error} (skipped)")

    shard = parse_shard(options.shard)
    finished = done_ids(options.output) if options.resume else set()
    total = None if shard else count_lines(input)

    def pending() -> Iterator[tuple[int, dict[str, Any]]]:
        for lineno, record in iter_records(input, validate, options.skip_invalid, skipped):
            stats.read += 1
            record_id = ensure_id(record)
            if not in_shard(record_id, shard):
                continue
            if record_id in finished:
                stats.skipped_done += 1
                continue
            yield lineno, record

    writer = RecordWriter(options.output, append=options.resume)
    try:
        with console.progress(describe, total) as advance:
            shown = 0
            for batch in _batches(pending(), options.batch_size):
                failures: dict[str, str] = {}
                token = _failures.set(failures)
                try:
                    results = process(batch)
                finally:
                    _failures.reset(token)
                if failures:
                    results = [r for r in results if str(r.get("id")) not in failures]
                    for record_id, reason in failures.items():
                        console.warn(command, f"record {record_id} failed: {reason}")
                    stats.failed.update(failures)
                writer.write(results)
                stats.written += len(results)
                advance(stats.read - shown)
                shown = stats.read
    finally:
        writer.close()
        stats.seconds = time.perf_counter() - started
    summary = f"{stats.written} records written in {stats.seconds:.1f}s"
    if stats.skipped_done:
        summary += f", {stats.skipped_done} already done"
    if stats.skipped_invalid:
        summary += f", {stats.skipped_invalid} invalid lines skipped"
    if stats.failed:
        summary += f", {len(stats.failed)} failed"
    console.info(command, summary)
    if stats.failed:
        ids = sorted(stats.failed)
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise CaitoolError(
            f"{len(ids)} records failed and were left out of the output ({shown}); "
            "the rest were written. With -o FILE, rerun with --resume to retry only them"
        )
    return stats
