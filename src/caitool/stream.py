"""The batch loop every record command shares: read, skip what is done, process, write."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
                results = process(batch)
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
    console.info(command, summary)
    return stats
