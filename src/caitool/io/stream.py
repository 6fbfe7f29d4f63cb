"""The batch loop every record command shares: read, skip what is done, process, write.

A step gets a batch of records and gives back a :class:`StepResult`: the records to write and
the ids of those that failed for good (a remote server that kept erroring), with the reason.
Failed records are named on stderr and left out of the output; the others are written, and
the run ends with an error once the input is done, so ``--resume`` redoes only the failed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.io.jsonl import (
    RecordWriter,
    Validator,
    count_lines,
    done_ids,
    iter_records,
    same_file,
    source_name,
)
from caitool.schema import ensure_id

Record = dict[str, Any]
Batch = list[Record]


@dataclass
class StepResult:
    """What a step gives back for one batch."""

    records: Batch
    failed: dict[str, str] = field(default_factory=dict)  # record id -> why it failed


@dataclass
class StreamStats:
    read: int = 0
    written: int = 0
    skipped_invalid: int = 0
    skipped_done: int = 0
    duplicates: int = 0
    first_duplicate: str = ""
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)


def batches(records: Iterator[tuple[int, Record]], size: int) -> Iterator[Batch]:
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


def check_run(input: str | None, output: str | None, batch_size: int, resume: bool) -> None:
    """What the batch loop refuses before it opens anything (shared with the Ray engine)."""
    if batch_size < 1:
        raise CaitoolError("--batch-size must be at least 1")
    if resume and output in (None, "-"):
        raise CaitoolError("--resume needs -o FILE (it skips the ids already in FILE)")
    if output not in (None, "-") and same_file(input, output):
        raise CaitoolError(f"-o {output} is the input file: writing would destroy the records "
                           "still to be read; write to another file")


def select(
    command: str,
    records: Iterator[tuple[int, Record]],
    source: str,
    stats: StreamStats,
    finished: set[str],
    part: tuple[int, int] | None,
) -> Iterator[tuple[int, Record]]:
    """The records still to process: each given its id, kept if in this shard, skipped if
    its id came before (counted) or is in ``finished`` (done by an earlier run)."""
    seen: set[str] = set()
    for lineno, record in records:
        stats.read += 1
        record_id = ensure_id(record)
        if not in_shard(record_id, part):
            continue
        # An id names one record: --resume skips by id, so a second record with the same
        # id would be written or not depending on where an earlier run stopped.
        if record_id in seen:
            stats.duplicates += 1
            stats.first_duplicate = stats.first_duplicate or f"{source}:{lineno}"
            continue
        seen.add(record_id)
        if record_id in finished:
            stats.skipped_done += 1
            continue
        yield lineno, record


def skipper(command: str, stats: StreamStats) -> Callable[[InputError], None]:
    """What --skip-invalid does with a bad line: count it and name it on stderr."""
    def skipped(error: InputError) -> None:
        stats.skipped_invalid += 1
        console.warn(command, f"{error} (skipped)")
    return skipped


def write_result(command: str, writer: RecordWriter, result: StepResult, stats: StreamStats) -> None:
    """Write a batch's records; name and count those that failed for good."""
    failed = dict(result.failed)
    kept = [r for r in result.records if str(r.get("id")) not in failed]
    stats.written += writer.write(kept, unwritable=failed)
    for record_id, reason in failed.items():
        console.warn(command, f"record {record_id} failed: {reason}")
    stats.failed.update(failed)


def run(
    command: str,
    input: str | None,
    process: Callable[[Batch], StepResult],
    *,
    output: str | None = None,
    batch_size: int = 16,
    resume: bool = False,
    skip_invalid: bool = False,
    shard: str | None = None,
    validate: Validator | None = None,
    describe: str = "records",
    records: Iterable[tuple[int, Record]] | None = None,
    finish: Callable[[StepResult], StepResult] | None = None,
) -> StreamStats:
    """Stream ``input`` through ``process`` batch by batch into ``output`` (stdout if None).

    ``records`` (numbered) stand in for reading ``input`` when a command makes its own work
    items (red-team's requests); ``finish`` sees each batch's result here, in order, before
    it is written, for what must be decided in one place (red-team's de-duplication)."""
    check_run(input, output, batch_size, resume)
    stats = StreamStats()
    started = time.perf_counter()
    part = parse_shard(shard)
    total = None if part or records is not None else count_lines(input)

    with RecordWriter(output, append=resume, flag="-o") as writer:
        # Read what is done only once the output is ours (the writer holds its lock).
        finished = done_ids(output) if resume else set()
        if records is None:
            records = iter_records(input, validate, skip_invalid, skipper(command, stats))
        pending = select(command, iter(records), source_name(input), stats, finished, part)
        try:
            with console.progress(describe, total) as advance:
                shown = 0
                for batch in batches(pending, batch_size):
                    result = process(batch)
                    write_result(command, writer, finish(result) if finish else result, stats)
                    advance(stats.read - shown)
                    shown = stats.read
        finally:
            stats.seconds = time.perf_counter() - started
    report(command, stats)
    return stats


def report(command: str, stats: StreamStats) -> None:
    """The run's summary on stderr; an error naming the failed records if any failed."""
    if stats.duplicates:
        many = stats.duplicates > 1
        console.warn(command, f"{stats.duplicates} record{'s repeat' if many else ' repeats'} "
                     f"the id of an earlier one and {'were' if many else 'was'} skipped (the "
                     f"first at {stats.first_duplicate}); give each record its own 'id'")
    summary = f"{stats.written} records written in {stats.seconds:.1f}s"
    if stats.skipped_done:
        summary += f", {stats.skipped_done} already done"
    if stats.duplicates:
        summary += f", {stats.duplicates} with a repeated id skipped"
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
