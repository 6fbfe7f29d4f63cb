"""The one batch loop every record command runs: read, skip what is done, batch, run, write.

How a step's batches run is the :class:`Executor` passed in: here, one after another
(:class:`InProcess`), as a dry run that writes the requests instead
(:class:`caitool.backends.dry_run.DryRun`), or on Ray replicas
(:class:`caitool.scaling.engine.OnRay`). The loop is the same for all: the same records,
ids, shards, batches (and with them seeds), resume and writer.

A step gets a :class:`Batch` of records and gives back a :class:`StepResult`: the records to
write and the ids of those that failed for good (a remote server that kept erroring), with
the reason. Failed records are named on stderr and left out of the output; the others are
written, and the run ends with an error once the input is done, so ``--resume`` redoes only
the failed.
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
from caitool.scaling import is_uri
from caitool.schema import ensure_id

Record = dict[str, Any]


class Batch(list):
    """The records of one batch, as a step gets them. ``written``: with ``--resume``, the
    ids already in the output of records that these records make several of (compare's
    pairs, ``ID:I-J``), so that the step redoes none of them."""

    written: frozenset[str] = frozenset()


# A step's maker: given the executor's backend (None for a step with no model), the
# function of a batch. Ray replicas get it pickled, so it holds settings, not a backend.
Bind = Callable[[Any], Callable[[Batch], "StepResult"]]


class Executor:
    """How a step's batches run: entered once around the loop, then ``map`` over every
    batch; results may come back in another order than the batches went in."""

    object_storage = False  # whether input and -o may be s3://, gs://... URIs

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, batches: Iterable[Batch]) -> Iterator[StepResult]:
        raise NotImplementedError


class InProcess(Executor):
    """Each batch in this process, in order, on one backend made on entry (or none)."""

    def __init__(self, bind: Bind, create: Callable[[], Any] | None = None):
        self._bind, self._create = bind, create
        self._backend: Any = None

    def __enter__(self) -> InProcess:
        self._backend = self._create() if self._create else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._backend is not None:
            self._backend.close()

    def map(self, batches: Iterable[Batch]) -> Iterator[StepResult]:
        step = self._bind(self._backend)
        return (step(batch) for batch in batches)


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


def batches(records: Iterator[tuple[int, Record]], size: int,
            parts: dict[str, set[str]] | None = None) -> Iterator[Batch]:
    """Group records; a bad line ends the stream only after the batch before it is yielded.
    ``parts``: written ids by the id of the record they were made from (see Batch)."""
    batch = Batch()

    def done() -> Batch:
        if parts:
            batch.written = frozenset(p for r in batch for p in parts.get(str(r.get("id")), ()))
        return batch

    while True:
        try:
            _, record = next(records)
        except StopIteration:
            break
        except InputError:
            if batch:
                yield done()
            raise
        batch.append(record)
        if len(batch) >= size:
            yield done()
            batch = Batch()
    if batch:
        yield done()


def written_parts(finished: set[str]) -> dict[str, set[str]]:
    """The ids ``ID:SUFFIX`` among those written, by ``ID``: the records a step made
    several of from one input record (compare's other pairs)."""
    parts: dict[str, set[str]] = {}
    for written in finished:
        if ":" in written:
            parts.setdefault(written.rsplit(":", 1)[0], set()).add(written)
    return parts


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
    process: Executor | Callable[[Batch], StepResult],
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
    """Stream ``input`` through ``process`` (an executor, or a step to run here) batch by
    batch into ``output`` (stdout if None).

    ``records`` (numbered) stand in for reading ``input`` when a command makes its own work
    items (red-team's requests); ``finish`` sees each batch's result here, in the order the
    results come, before it is written, for what must be decided in one place (red-team's
    de-duplication)."""
    executor = process if isinstance(process, Executor) else InProcess(lambda _: process)
    check_run(input, output, batch_size, resume)
    for path in (input, output):
        if is_uri(path) and not executor.object_storage:
            raise CaitoolError(f"{path}: object storage is read and written with --ray")
    stats = StreamStats()
    started = time.perf_counter()
    part = parse_shard(shard)
    total = None if part or records is not None or is_uri(input) else count_lines(input)

    with executor, _writer(output, resume) as writer:
        # Read what is done only once the output is ours (the writer holds its lock).
        finished = _done_ids(output) if resume else set()
        if records is None:
            records = _read(input, validate, skip_invalid, skipper(command, stats))
        pending = select(command, iter(records), source_name(input), stats, finished, part)
        try:
            with console.progress(describe, total) as advance:
                shown = 0
                for result in executor.map(batches(pending, batch_size, written_parts(finished))):
                    write_result(command, writer, finish(result) if finish else result, stats)
                    advance(stats.read - shown)
                    shown = stats.read
        finally:
            stats.seconds = time.perf_counter() - started
    report(command, stats)
    return stats


def _writer(output: str | None, resume: bool) -> Any:
    if is_uri(output):
        from caitool.scaling import storage

        return storage.ShardWriter(output, append=resume)  # type: ignore[arg-type]
    return RecordWriter(output, append=resume, flag="-o")


def _done_ids(output: str | None) -> set[str]:
    if is_uri(output):
        from caitool.scaling import storage

        return storage.done_ids_under(output)  # type: ignore[arg-type]
    return done_ids(output)  # type: ignore[arg-type]


def _read(input: str | None, validate: Validator | None, skip_invalid: bool,
          skipped: Callable[[InputError], None]) -> Iterator[tuple[int, Record]]:
    if is_uri(input):
        from caitool.scaling import storage

        return storage.iter_uri_records(input, validate, skip_invalid, skipped)  # type: ignore[arg-type]
    return iter_records(input, validate, skip_invalid, skipped)


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
