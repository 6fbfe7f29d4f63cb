"""The Ray executor: a step's batches run on model replicas, Ray actors in a pool.

The batch loop (:func:`caitool.io.stream.run`) reads, batches and writes here, in this
process, exactly as in a plain run; this executor only hands each batch to a free replica
(:class:`caitool.scaling.replica.Replica`, one backend each) and gives back the results in
the order they finish. Replicas start as batches arrive, up to ``--replicas``, so a small
input starts no more of them than it has batches. A few batches per replica wait queued,
so none idles and memory stays bounded.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.io.stream import Batch, Bind, Executor, StepResult
from caitool.scaling import cluster
from caitool.scaling.replica import BackendSpec, Broken, Replica

QUEUED_PER_REPLICA = 2
RESTARTS = 3  # per replica, before the run ends with the replica's error


def root_cause(exc: BaseException) -> str:
    """The one line worth showing from a failed Ray task: a CaitoolError raised in a replica
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


class OnRay(Executor):
    """Each batch on one of ``options.replicas`` replicas of ``spec``'s backend."""

    object_storage = True

    def __init__(self, command: str, spec: BackendSpec, bind: Bind, options: cluster.RayOptions,
                 env_keys: tuple[str, ...] = ()):
        options.check()
        self.command, self.spec, self.bind, self.options = command, spec, bind, options
        self.env_keys = env_keys
        self._ray: Any = None
        self._actors: list[Any] = []

    def __enter__(self) -> OnRay:
        if self.options.address is None:
            # Everything runs on this machine: what the backend checks as it is built (the
            # model's path, its options) can fail here, before Ray starts.
            self.spec.create().close()
        self._ray = cluster.connect(self.options, cluster.forwarded_env(self.env_keys))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None

    def _actor_class(self) -> Any:
        cpus = self.options.cpus(cluster.cluster_cpus(self._ray))
        gpus = self.options.gpus_per_replica
        each = f"{cpus:g} CPU{'' if cpus == 1 else 's'}" + (f", {gpus:g} GPU" if gpus else "")
        many = self.options.replicas > 1
        console.info(self.command, f"on Ray: {self.options.replicas} replica{'s' if many else ''} "
                     f"({each} each)")
        # A replica whose process dies (killed, out of memory, its node lost) is restarted
        # and its batches sent again, a few times: no batch was written, so none is doubled.
        return self._ray.remote(num_cpus=cpus, max_restarts=RESTARTS, max_task_retries=RESTARTS,
                                **({"num_gpus": gpus} if gpus else {}))(Replica)

    def map(self, batches: Iterable[Batch]) -> Iterator[StepResult]:
        from ray.util import ActorPool

        actor = self._actor_class()
        pool = ActorPool([])
        waiting = 0
        problem: BaseException | None = None
        source = iter(batches)
        try:
            while True:
                while problem is None and waiting < QUEUED_PER_REPLICA * self.options.replicas:
                    try:
                        batch = next(source)
                    except StopIteration:
                        break
                    except (InputError, CaitoolError) as exc:
                        problem = exc  # raised once the batches already running are written
                        break
                    if not pool.has_free() and len(self._actors) < self.options.replicas:
                        self._actors.append(actor.remote(self.spec, self.bind))
                        pool.push(self._actors[-1])
                    pool.submit(lambda replica, payload: replica.run.remote(payload),
                                pickle.dumps(batch))
                    waiting += 1
                if not waiting:
                    break
                result = pool.get_next_unordered()
                waiting -= 1
                if isinstance(result, Broken):
                    raise CaitoolError(result.reason)
                yield result
        except (CaitoolError, KeyboardInterrupt, BrokenPipeError, GeneratorExit):
            raise
        except Exception as exc:  # noqa: BLE001 - Ray's errors wrap the one that matters
            raise CaitoolError(f"the Ray job failed: {root_cause(exc)}; with -o FILE, rerun "
                               "with --resume to do the records not written") from None
        if problem is not None:
            raise problem
        if len(self._actors) < self.options.replicas:
            console.info(self.command, f"{len(self._actors)} of {self.options.replicas} replicas "
                         "started: the input had no more batches for the others")
