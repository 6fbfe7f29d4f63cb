"""The batch loop on Ray: the same records in, the same step, the same records out.

This process reads the input with caitool's strict reader (or, for a URI, through Ray Data),
gives each record its id, skips the done and the other shards' records and groups batches
exactly as the plain loop does. The batches stream through a Ray Data pipeline: a feed that
takes them from a queue, then ``map_batches`` over an actor pool of :class:`Replica`, each
holding one backend. Results come back in the order they finish and are written here, by
the same writer as a plain run, so ``--resume`` skips by id as it always has.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.io import stream
from caitool.io.jsonl import RecordWriter, Validator, count_lines, done_ids, iter_records, source_name
from caitool.scaling import cluster, is_uri, storage
from caitool.scaling.replica import BackendSpec, Broken, Replica, StepFactory

END = b""  # the feed's last item


def _feed_source(queue: Any) -> Any:
    """A Ray Data source with one read task that yields the batches this process puts on
    ``queue`` (a Ray queue actor) until ``END``: the input streams in as it is read."""
    import pyarrow as pa
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class Feed(Datasource):
        def estimate_inmemory_data_size(self) -> None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[ReadTask]:
            def read() -> Iterator[Any]:
                while (payload := queue.get()) != END:
                    yield pa.table({"batch": pa.array([payload], type=pa.binary())})

            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(read, meta)]

    return Feed()


def _root_cause(exc: BaseException) -> str:
    """The one line worth showing from a failed Ray job: a CaitoolError raised in a replica
    (a model that cannot load) as it is, else the innermost error."""
    seen: set[int] = set()
    node: BaseException | None = exc
    last = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, CaitoolError):
            return str(node)
        last = node
        node = getattr(node, "cause", None) or node.__cause__
    text = str(last).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(last).__name__).strip()


def run(
    command: str,
    input: str | None,
    spec: BackendSpec,
    make_step: StepFactory,
    options: cluster.RayOptions,
    *,
    env_keys: tuple[str, ...] = (),
    output: str | None = None,
    batch_size: int = 16,
    resume: bool = False,
    skip_invalid: bool = False,
    shard: str | None = None,
    validate: Validator | None = None,
    describe: str = "records",
    records: Iterable[tuple[int, Any]] | None = None,
    finish: Callable[[stream.StepResult], stream.StepResult] | None = None,
) -> stream.StreamStats:
    """:func:`caitool.io.stream.run` with the step run by ``options.replicas`` replicas
    (``records`` and ``finish`` as there: ``finish`` runs here, not on the replicas)."""
    options.check()
    stream.check_run(input, output, batch_size, resume)
    stats = stream.StreamStats()
    started = time.perf_counter()
    part = stream.parse_shard(shard)
    total = None if part or records is not None or is_uri(input) else count_lines(input)
    writer: Any = (storage.ShardWriter(output, append=resume) if is_uri(output)
                   else RecordWriter(output, append=resume, flag="-o"))
    with writer:
        # As in the plain loop: what is done is read once the output is ours.
        finished = (storage.done_ids_under(output) if is_uri(output) else done_ids(output)) \
            if resume else set()
        if options.address is None:
            # Everything runs on this machine: what the backend checks as it is built (the
            # model's path, its options) can fail here, before Ray starts.
            spec.create().close()
        ray = cluster.connect(options, cluster.forwarded_env(env_keys))
        try:
            _execute(ray, command, input, spec, make_step, options, writer, stats, finished,
                     part, total, batch_size, skip_invalid, validate, describe, records, finish)
        finally:
            stats.seconds = time.perf_counter() - started
            ray.shutdown()
    stream.report(command, stats)
    return stats


def _execute(ray: Any, command: str, input: str | None, spec: BackendSpec,
             make_step: StepFactory, options: cluster.RayOptions, writer: Any,
             stats: stream.StreamStats, finished: set[str], part: tuple[int, int] | None,
             total: int | None, batch_size: int, skip_invalid: bool,
             validate: Validator | None, describe: str,
             given: Iterable[tuple[int, Any]] | None = None,
             finish: Callable[[stream.StepResult], stream.StepResult] | None = None) -> None:
    from ray.data import ActorPoolStrategy
    from ray.util.queue import Queue

    skipped = stream.skipper(command, stats)
    source = input if is_uri(input) else source_name(input)
    if given is not None:
        records: Iterator[tuple[int, Any]] = iter(given)
    elif is_uri(input):
        records = storage.iter_uri_records(ray, input, validate, skip_invalid, skipped)
    else:
        records = iter_records(input, validate, skip_invalid, skipped)
    pending = stream.select(command, records, source, stats, finished, part)
    # Enough batches queued that no replica waits, few enough to bound memory. It holds no
    # CPU: the replicas may hold them all.
    queue = Queue(maxsize=2 * options.replicas + 2, actor_options={"num_cpus": 0})
    problem: list[BaseException] = []
    sent = received = 0

    def feed() -> None:
        nonlocal sent
        try:
            for batch in stream.batches(pending, batch_size):
                queue.put(pickle.dumps(batch))
                sent += 1
        except BaseException as exc:  # noqa: BLE001 - raised in the main thread once the rest is written
            problem.append(exc)
        finally:
            try:
                queue.put(END)
            except Exception:  # noqa: BLE001 - Ray already shut down: nothing waits for it
                pass

    feeder = threading.Thread(target=feed, name="caitool-feed", daemon=True)
    # Compare skips the pairs already written: the replicas get the ids (Ray Data stores the
    # constructor's arguments once, in the object store).
    done = finished or None
    cpus = options.cpus(cluster.cluster_cpus(ray))
    dataset = ray.data.read_datasource(_feed_source(queue), num_cpus=0, override_num_blocks=1)
    dataset = dataset.map_batches(
        Replica, fn_constructor_args=(spec, make_step, done), batch_size=1,
        compute=ActorPoolStrategy(size=options.replicas), num_cpus=cpus,
        num_gpus=options.gpus_per_replica or None)
    gpus = f", {options.gpus_per_replica:g} GPU" if options.gpus_per_replica else ""
    console.info(command, f"on Ray: {options.replicas} replica{'s' if options.replicas > 1 else ''} "
                 f"({cpus:g} CPU{'' if cpus == 1 else 's'}{gpus} each)")
    feeder.start()
    try:
        with console.progress(describe, total) as advance:
            for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for payload in block["result"]:
                    result = pickle.loads(payload)
                    if isinstance(result, Broken):
                        raise CaitoolError(result.reason)
                    received += 1
                    stream.write_result(command, writer, finish(result) if finish else result, stats)
                    advance(len(result.records) + len(result.failed))
    except (CaitoolError, KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as exc:  # noqa: BLE001 - Ray's errors wrap the one that matters
        raise CaitoolError(f"the Ray job failed: {_root_cause(exc)}") from None
    if problem:
        if isinstance(problem[0], (CaitoolError, InputError)):
            raise problem[0]
        raise CaitoolError(f"reading the input failed: {_root_cause(problem[0])}")
    if received < sent:
        # A batch taken by a feed task that died with its node: nothing says which records.
        raise CaitoolError(f"{sent - received} of {sent} batches were lost in the cluster and "
                           "not written; with -o FILE, rerun with --resume to do them")
