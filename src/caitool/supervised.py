"""The paper's supervised stage as library functions over batches of records.

``generate``: answer prompts. ``critique``: sample a principle per record and round and ask
the model to critique its current response. ``revise``: in the same conversation, ask for the
revision that answers the critique. The CLI commands are thin wrappers over these.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from caitool import prompts, stream
from caitool.backends.base import Backend, RequestsFailed, SamplingParams
from caitool.constitution import Constitution, Principle
from caitool.records import add_provenance, check_prompt, check_response, conversation

Record = dict[str, Any]


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
class Generator:
    """A backend plus the settings every supervised step shares."""

    backend: Backend
    fmt: str
    params: SamplingParams
    seed: int = 0

    @classmethod
    def create(cls, backend: Backend, fmt: str, params: SamplingParams) -> Generator:
        if fmt == "auto":
            fmt = backend.default_format()
        return cls(backend, fmt, params, params.seed or 0)

    def provenance(self, **extra: Any) -> dict[str, Any]:
        return {**self.backend.describe(), "format": self.fmt, "seed": self.seed,
                "temperature": self.params.temperature, **extra}

    def run(self, requests, records: list[Record], step: str, n: int = 1) -> list[list[str]]:
        """``n`` completions per request. A record whose request fails for good (a remote
        server) is reported to the batch loop, which leaves it out of the output; it gets
        empty placeholders here so the step can finish the others."""
        stop = requests[0][1] if requests else []
        params = SamplingParams(
            max_new_tokens=self.params.max_new_tokens, temperature=self.params.temperature,
            top_p=self.params.top_p, n=n, stop=stop, seed=batch_seed(self.seed, records, step),
        )
        live = [i for i, record in enumerate(records) if not stream.has_failed(record)]
        outputs: list[list[str]] = [[""] * n for _ in records]
        if not live:
            return outputs
        try:
            results = self.backend.generate([requests[i][0] for i in live], params)
        except RequestsFailed as exc:
            for index, reason in exc.failures.items():
                stream.record_failed(records[live[index]], reason)
            results = exc.results
        for index, result in zip(live, results, strict=True):
            if result is not None:
                outputs[index] = result
        return outputs


# -- validation ----------------------------------------------------------------------------


def check_revisions(record: Record) -> str | None:
    revisions = record.get("revisions")
    if revisions is None:
        return None
    if not isinstance(revisions, list):
        return "'revisions' must be a list"
    for i, entry in enumerate(revisions):
        if not isinstance(entry, dict) or not isinstance(entry.get("critique"), str):
            return f"'revisions[{i}]' must be an object with a 'critique' string"
        if entry.get("revision") is not None and not isinstance(entry["revision"], str):
            return f"'revisions[{i}].revision' must be a string or null"
    return None


def pending(record: Record) -> bool:
    revisions = record.get("revisions") or []
    return bool(revisions) and revisions[-1].get("revision") is None


def check_for_critique(record: Record) -> str | None:
    problem = check_prompt(record) or check_response(record) or check_revisions(record)
    if problem:
        return problem
    if pending(record):
        return "the last round's critique has no revision yet; run 'caitool revise' first"
    return None


def check_for_revise(record: Record) -> str | None:
    problem = check_prompt(record) or check_response(record) or check_revisions(record)
    if problem:
        return problem
    if "response" not in record:
        return "missing 'response' (run 'caitool critique' first)"
    if not pending(record):
        return "no critique waiting for a revision; run 'caitool critique' first"
    return None


# -- the steps -----------------------------------------------------------------------------


def generate(gen: Generator, records: list[Record], n: int = 1) -> list[Record]:
    """Answer each record; ``response`` for one sample, ``responses`` for ``n`` > 1."""
    requests = [prompts.response_prompt(conversation(r), gen.fmt) for r in records]
    outputs = gen.run(requests, records, "generate", n=n)
    for record, samples in zip(records, outputs):
        if n == 1:
            record["response"] = samples[0]
        else:
            record["responses"] = samples
        add_provenance(record, "generate", gen.provenance(n=n))
    return records


def critique(gen: Generator, constitution: Constitution, records: list[Record]) -> list[Record]:
    missing = [r for r in records if "response" not in r]
    if missing:
        generate(gen, missing)
    requests = []
    for record in records:
        record.setdefault("initial_response", record["response"])
        revisions = record.setdefault("revisions", [])
        principle = sample_principle(constitution, gen.seed, str(record["id"]), len(revisions))
        revisions.append({"principle": principle.id, "critique": None, "revision": None})
        requests.append(prompts.critique_prompt(
            constitution, conversation(record), record["response"], principle, gen.fmt))
    outputs = gen.run(requests, records, f"critique{len(records[0]['revisions'])}")
    for record, samples in zip(records, outputs):
        record["revisions"][-1]["critique"] = samples[0]
        add_provenance(record, "critique", gen.provenance(constitution=constitution.name))
    return records


def revise(gen: Generator, constitution: Constitution, records: list[Record]) -> list[Record]:
    requests = []
    for record in records:
        entry = record["revisions"][-1]
        principle = constitution.principle(entry["principle"])
        # `response` is still the answer that was critiqued: critique does not change it.
        requests.append(prompts.critique_prompt(
            constitution, conversation(record), record["response"], principle, gen.fmt,
            critique=entry["critique"]))
    outputs = gen.run(requests, records, f"revise{len(records[0]['revisions'])}")
    for record, samples in zip(records, outputs):
        record["revisions"][-1]["revision"] = samples[0]
        record["response"] = samples[0]
        add_provenance(record, "revise", gen.provenance(constitution=constitution.name))
    return records
