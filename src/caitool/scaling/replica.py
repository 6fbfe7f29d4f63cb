"""One model replica: an actor that builds its backend once and runs the stage's step.

The Ray executor starts :class:`Replica` on each actor from plain, picklable arguments (a
:class:`BackendSpec` and the command's step maker) and sends it pickled batches, exactly the
batches the plain loop makes, so seeds and outputs are the same. A batch whose step raises
is retried record by record, so that one bad record (an over-long prompt) fails alone, with
its id, and the others are written.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from caitool.errors import CaitoolError
from caitool.io.stream import Batch, Bind, StepResult


@dataclass(frozen=True)
class BackendSpec:
    """What a replica needs to build its backend: the backend's name, the model, the
    options the user gave. A live backend (a loaded model, open connections) does not
    travel; this does."""

    backend: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)

    def create(self):
        from caitool.backends import registry

        return registry.create(self.backend, self.model, **self.options)


def reason(exc: BaseException) -> str:
    """An exception as the one line that names a failed record."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, CaitoolError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def run_batch(step: Callable[[Batch], StepResult], payload: bytes) -> StepResult:
    """The step on one pickled batch. If it raises, each record is tried alone (from a
    fresh copy: a step changes its records in place) and those that still raise fail."""
    batch: Batch = pickle.loads(payload)  # a fresh copy for each try: steps change records
    try:
        return step(batch)
    except Exception as exc:  # noqa: BLE001 - whatever a record does, the job goes on
        if len(batch) == 1:
            return StepResult([], {str(batch[0].get("id")): reason(exc)})
    records: Batch = []
    failed: dict[str, str] = {}
    for record in pickle.loads(payload):
        try:
            alone = Batch([record])
            alone.written = getattr(batch, "written", frozenset())
            result = step(alone)
        except Exception as exc:  # noqa: BLE001
            failed[str(record.get("id"))] = reason(exc)
            continue
        records += result.records
        failed.update(result.failed)
    return StepResult(records, failed)


@dataclass
class Broken:
    """What a replica whose backend could not be built returns for every batch: the driver
    ends the job with this one line (a model that cannot load is no record's fault)."""

    reason: str


class Replica:
    """What runs on every actor of the pool: one backend, one step, batch after batch."""

    def __init__(self, spec: BackendSpec, bind: Bind):
        self.backend = None
        self.broken: Broken | None = None
        try:
            self.backend = spec.create()
            # Load the model now, before any batch: one that cannot load ends the job in one
            # line rather than failing every record one by one.
            self.backend.has_chat_template()
            self.step = bind(self.backend)
        except Exception as exc:  # noqa: BLE001 - reported by the driver, not as a traceback
            self.broken = Broken(reason(exc))

    def run(self, payload: bytes) -> StepResult | Broken:
        return self.broken or run_batch(self.step, payload)

    def __del__(self) -> None:
        # Also called on the driver's copy of the class wrapper, which never ran __init__.
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
