"""The paper's supervised stage as library functions over batches of records.

``generate``: answer prompts. ``critique``: sample a principle per record and round and ask
the model to critique its current response. ``revise``: in the same conversation, ask for the
revision that answers the critique. ``revise_direct``: the paper's ablation without critiques,
a sampled principle's revision request straight after the response. ``rounds``: whole rounds, one after another,
in one process. Each returns the
batch's records and the ids of those whose requests failed for good (a remote server that
kept erroring), which the batch loop leaves out of the output and names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from caitool import render
from caitool.backends.base import Backend, RequestsFailed, SamplingParams
from caitool.constitution import Constitution, Principle
from caitool.io.stream import Bind, StepResult
from caitool.schema import add_provenance, conversation

Record = dict[str, Any]
# What each step's requests serve, as a dry run names them (seeds use the step's own name).
STEP_NAMES = {"generate": "response", "critique": "critique", "revise": "revision",
              "direct": "revision"}


def batch_seed(seed: int, records: list[Record], step: str) -> int:
    """A generation seed fixed by the run's seed, the step and the batch's ids, so a resumed
    run samples the same way for the same batch and no two steps share random numbers."""
    key = f"{seed}:{step}:" + ",".join(str(r.get("id")) for r in records)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def sample_principle(constitution: Constitution, seed: int, record_id: str, round_: int) -> Principle:
    """Independent, with replacement, per record and round, as in the paper."""
    rng = random.Random(f"{seed}:{record_id}:{round_}")
    return rng.choice(constitution.principles)


@dataclass
class Sampler:
    """A backend, the prompt format and the sampling settings every supervised step shares.

    The format is resolved on first use (``auto`` needs the tokenizer, so empty input never
    loads a model)."""

    backend: Backend
    params: SamplingParams
    requested_format: str = "auto"
    _format: render.Format | None = field(default=None, init=False, repr=False)

    @property
    def seed(self) -> int:
        return self.params.seed or 0

    @property
    def fmt(self) -> render.Format:
        if self._format is None:
            self._format = render.resolve_format(self.requested_format,
                                                 self.backend.has_chat_template(),
                                                 self.backend.model)
        return self._format

    def provenance(self, **extra: Any) -> dict[str, Any]:
        settings = {"format": self.fmt, "seed": self.seed, "temperature": self.params.temperature}
        # Only what departs from the defaults, so that older records read the same.
        if self.params.top_k:
            settings["top_k"] = self.params.top_k
        if self.params.repetition_penalty != 1.0:
            settings["repetition_penalty"] = self.params.repetition_penalty
        return {**self.backend.describe(), **settings, **extra}

    def complete(self, requests: list[tuple[render.Prompt, list[str]]], records: list[Record],
                 step: str, failed: dict[str, str], n: int = 1) -> list[list[str]]:
        """``n`` completions per request. Records already in ``failed`` are not asked again;
        a record whose request fails for good is added to ``failed`` and gets empty
        placeholders, so the step can finish the others."""
        stop = requests[0][1] if requests else []
        params = dataclasses.replace(self.params, n=n, stop=stop,
                                     seed=batch_seed(self.seed, records, step))
        live = [i for i, record in enumerate(records) if str(record.get("id")) not in failed]
        outputs: list[list[str]] = [[""] * n for _ in records]
        if not live:
            return outputs
        serves = STEP_NAMES.get(step.rstrip("0123456789"), step)
        prompts = [requests[i][0].serving(str(records[i].get("id")), serves) for i in live]
        try:
            results = self.backend.generate(prompts, params)
        except RequestsFailed as exc:
            for index, reason in exc.failures.items():
                failed.setdefault(str(records[live[index]].get("id")), reason)
            results = exc.results
        for index, result in zip(live, results, strict=True):
            if result is not None:
                outputs[index] = result
        return outputs


def step(action: Any, params: SamplingParams, fmt: str, *args: Any, **kwargs: Any) -> Bind:
    """``action`` (:func:`generate`, :func:`critique`, ...) as the batch loop runs it: on
    the executor's backend, with these settings, ``action(sampler, *args, batch, **kwargs)``."""
    def bind(backend: Backend) -> Any:
        sampler = Sampler(backend, params, fmt)
        return lambda batch: action(sampler, *args, batch, **kwargs)
    return bind


def _answer(sampler: Sampler, records: list[Record], failed: dict[str, str], n: int = 1) -> None:
    requests = [render.response_prompt(conversation(r), sampler.fmt) for r in records]
    outputs = sampler.complete(requests, records, "generate", failed, n=n)
    for record, samples in zip(records, outputs):
        if n == 1:
            record["response"] = samples[0]
        else:
            record["responses"] = samples
        add_provenance(record, "generate", sampler.provenance(n=n))


def generate(sampler: Sampler, records: list[Record], n: int = 1) -> StepResult:
    """Answer each record; ``response`` for one sample, ``responses`` for ``n`` > 1."""
    failed: dict[str, str] = {}
    _answer(sampler, records, failed, n)
    return StepResult(records, failed)


def _new_round(sampler: Sampler, constitution: Constitution, records: list[Record],
               failed: dict[str, str], **round_: Any) -> list[Principle]:
    """Answer the records that have no response yet, and open a round on each under a
    principle sampled for its id and round number."""
    missing = [r for r in records if "response" not in r]
    if missing:
        _answer(sampler, missing, failed)
    principles = []
    for record in records:
        record.setdefault("initial_response", record["response"])
        revisions = record.setdefault("revisions", [])
        principle = sample_principle(constitution, sampler.seed, str(record["id"]), len(revisions))
        revisions.append({"principle": principle.id, **round_})
        principles.append(principle)
    return principles


def critique(sampler: Sampler, constitution: Constitution, records: list[Record]) -> StepResult:
    """A new round per record: a sampled principle and the model's critique of its response
    (records without a response are answered first)."""
    failed: dict[str, str] = {}
    principles = _new_round(sampler, constitution, records, failed, critique=None, revision=None)
    requests = [render.critique_prompt(constitution, conversation(record), record["response"],
                                       principle, sampler.fmt)
                for record, principle in zip(records, principles)]
    outputs = sampler.complete(requests, records, f"critique{len(records[0]['revisions'])}", failed)
    for record, samples in zip(records, outputs):
        record["revisions"][-1]["critique"] = samples[0]
        add_provenance(record, "critique", sampler.provenance(constitution=constitution.name))
    return StepResult(records, failed)


def revise(sampler: Sampler, constitution: Constitution, records: list[Record]) -> StepResult:
    """The revision each round's critique asks for, asked in the same conversation; it
    becomes the record's response."""
    failed: dict[str, str] = {}
    requests = []
    for record in records:
        entry = record["revisions"][-1]
        principle = constitution.principle(entry["principle"])
        # `response` is still the answer that was critiqued: critique does not change it.
        requests.append(render.critique_prompt(
            constitution, conversation(record), record["response"], principle, sampler.fmt,
            critique=entry["critique"]))
    return _revised(sampler, constitution, records, requests, "revise", failed)


def _revised(sampler: Sampler, constitution: Constitution, records: list[Record],
             requests: list[tuple[render.Prompt, list[str]]], step: str, failed: dict[str, str],
             **provenance: Any) -> StepResult:
    """Each record's last round revised as asked; the revision becomes its response."""
    outputs = sampler.complete(requests, records, f"{step}{len(records[0]['revisions'])}", failed)
    for record, samples in zip(records, outputs):
        record["revisions"][-1]["revision"] = samples[0]
        record["response"] = samples[0]
        add_provenance(record, "revise", sampler.provenance(constitution=constitution.name,
                                                            **provenance))
    return StepResult(records, failed)


def revise_direct(sampler: Sampler, constitution: Constitution, records: list[Record]) -> StepResult:
    """A new round per record, revised with no critique: the principle is sampled as
    ``critique`` samples it, so a direct run and a critiqued one with the same seed revise
    each record under the same principles and differ only in the critique."""
    failed: dict[str, str] = {}
    principles = _new_round(sampler, constitution, records, failed,
                            critique=None, revision=None, direct=True)
    requests = [render.critique_prompt(constitution, conversation(record), record["response"],
                                       principle, sampler.fmt, direct=True)
                for record, principle in zip(records, principles)]
    return _revised(sampler, constitution, records, requests, "direct", failed, direct=True)


def rounds(sampler: Sampler, constitution: Constitution, records: list[Record], count: int,
           direct: bool = False) -> StepResult:
    """``count`` whole rounds per record (critique then revision, or direct revisions), on one
    backend: the records a pipe of ``count`` critique | revise pairs with the same seed writes,
    without loading the model again for each step. A record that fails in one step takes no
    further part, as the pipe would have dropped it."""
    failed: dict[str, str] = {}
    steps = [revise_direct] if direct else [critique, revise]
    for _ in range(count):
        for action in steps:
            live = [r for r in records if str(r.get("id")) not in failed]
            if not live:
                return StepResult(records, failed)
            failed.update(action(sampler, constitution, live).failed)
    return StepResult(records, failed)
