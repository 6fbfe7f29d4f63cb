"""New prompts grown from seed prompts by few-shot prompting, as the paper grew its red-team set.

Each request is a work item of its own: an id, and the seeds sampled for it (at random from a
seeded generator, from one category at a time when asked, so categories stay balanced). The
step shows the model those seeds, asks for one more, cleans the reply and marks the replies
that are not usable prompts (empty, cut off, an answer or a refusal, too short or too long).
The :class:`Sieve` then sees every batch in one place, in order (on a Ray run: where the
results are written, not on the replicas), drops what was marked, drops exact and near
duplicates of the seeds and of earlier outputs, stops at the number asked for, and counts
each reason for the summary.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from caitool import prompt_requests, render
from caitool.errors import CaitoolError
from caitool.io.stream import StepResult
from caitool.near_duplicates import DuplicateIndex, normalise
from caitool.prompt_requests import PromptRequest
from caitool.schema import add_provenance, conversation, ensure_id
from caitool.stages.supervised import Sampler

Record = dict[str, Any]
COMMAND = "red-team"
# Why the step refused a reply; popped by the sieve, never written.
REJECTED = "_rejected"
# What the index calls the texts that are not new outputs, so a match says what it repeats.
ORIGINS = {"seed": "seed ", "held_out": "held-out "}

# Openings of a reply that answers or refuses instead of asking, on normalised text (lower
# case, apostrophes dropped): a model asked for a request often writes the assistant's side.
NOT_A_PROMPT = (
    "sure", "certainly", "of course", "absolutely", "here is", "heres", "here are", "great question",
    "im sorry", "i am sorry", "sorry", "i apologise", "i apologize", "i cant", "i cannot",
    "i wont", "i will not", "im not able", "i am not able", "im unable", "i am unable",
    "as an ai", "as a language model", "as an assistant", "unfortunately", "id be happy",
    "i would be happy", "thank you for", "i understand that",
)
_OPENINGS = re.compile(r"^(?:" + "|".join(re.escape(p) for p in NOT_A_PROMPT) + r")\b")
_LABEL = re.compile(r"^\s*(?:(?:new\s+)?(?:request|message|prompt)\s*(?:\d+\s*)?:|\d+\s*[.)]|[-*\u2022])\s*",
                    re.IGNORECASE)
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
# Replies in a row that all fail the filters before a run stops short of -n: the rest of the
# budget would go the same way (a model that only refuses, or that has made every prompt it
# can), while at any keep rate worth having a run this long keeps at least one.
STALL = 256
_ENDINGS = tuple(".?!\"')]\u201d\u2019\u2026")

REASONS = {
    "empty": "empty",
    "cut_off": "cut off",
    "not_a_prompt": "an answer or a refusal",
    "too_short": "too short",
    "too_long": "too long",
    "duplicate_seed": "a seed repeated",
    "duplicate_held_out": "a held-out prompt repeated",
    "duplicate_output": "an earlier output repeated",
    "near_duplicate_seed": "near a seed",
    "near_duplicate_held_out": "near a held-out prompt",
    "near_duplicate_output": "near an earlier output",
}


@dataclass(frozen=True)
class Limits:
    """The checks a reply passes on its own (the sieve adds those against other texts)."""

    min_words: int = 3
    max_words: int = 120
    max_new_tokens: int = 96

    def problem(self, text: str) -> str | None:
        if not text:
            return "empty"
        words = len(text.split())
        # A reply that spent its token budget without ending a sentence was cut off (a
        # backend does not say why it stopped; a token is at most about one word).
        if words >= 0.6 * self.max_new_tokens and not text.endswith(_ENDINGS):
            return "cut_off"
        if _OPENINGS.match(normalise(text)):
            return "not_a_prompt"
        if words < self.min_words:
            return "too_short"
        if words > self.max_words:
            return "too_long"
        return None


def clean(reply: str) -> str:
    """The new prompt in a reply: its first paragraph, without a label, numbering or quotes."""
    text = reply.strip()
    text = re.split(r"\n\s*\n", text, maxsplit=1)[0]
    text = _LABEL.sub("", text, count=1)
    text = " ".join(text.split())
    if len(text) > 1 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


# -- seeds and requests ----------------------------------------------------------------------


@dataclass
class Plan:
    """The seeds and how requests sample them."""

    seeds: dict[str, str]                       # id -> the text shown (its last user turn)
    categories: dict[str, list[str]]            # category -> seed ids (one group: "")
    shots: int = 4
    seed: int = 0
    by_category: bool = False
    request: PromptRequest = field(default_factory=lambda: prompt_requests.load("red-team"))

    @classmethod
    def from_records(cls, records: Sequence[Record], **settings: Any) -> Plan:
        seeds: dict[str, str] = {}
        categories: dict[str, list[str]] = {}
        for record in records:
            seed_id = ensure_id(record)
            if seed_id in seeds:
                continue
            # A conversation's last human turn: the ask its earlier turns lead up to.
            seeds[seed_id] = [m["content"] for m in conversation(record) if m["role"] == "user"][-1]
            category = record.get("category")
            key = category if isinstance(category, str) and settings.get("by_category") else ""
            categories.setdefault(key, []).append(seed_id)
        if not seeds:
            raise CaitoolError("no seed prompts: red-team needs some to show the model")
        return cls(seeds, categories, **settings)

    @property
    def key(self) -> str:
        """A short digest of what decides the requests, so ids from other plans never clash."""
        text = "|".join([self.request.name, str(self.seed), str(self.shots), str(self.by_category),
                         *self.seeds])
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def request_record(self, index: int) -> Record:
        rng = random.Random(f"{self.seed}:{index}")
        names = sorted(self.categories)
        category = names[index % len(names)]
        pool = self.categories[category]
        chosen = rng.sample(pool, min(self.shots, len(pool)))
        record: Record = {"id": f"{self.request.name}-{self.key}-{index + 1:06d}", "seeds": chosen}
        if category:
            record["category"] = category
        return record


def requests(plan: Plan, sieve: Sieve | None, limit: int) -> Iterator[tuple[int, Record]]:
    """Numbered requests, made as they are asked for: at most ``limit``, and none once the
    sieve has what it wants (without a sieve, as for a dry run: exactly ``limit``)."""
    for index in range(limit):
        if sieve is not None and (sieve.full or sieve.stalled):
            return
        yield index + 1, plan.request_record(index)


# -- the step and the sieve --------------------------------------------------------------------


def grow(sampler: Sampler, plan: Plan, limits: Limits, records: list[Record]) -> StepResult:
    """One new prompt per request; replies that are no prompt are marked for the sieve."""
    failed: dict[str, str] = {}
    asks = [render.grow_prompt(plan.request, [plan.seeds[s] for s in r["seeds"]], sampler.fmt)
            for r in records]
    outputs = sampler.complete(asks, records, COMMAND, failed)
    made = []
    for record, samples in zip(records, outputs):
        text = clean(samples[0])
        new: Record = {"id": record["id"], "prompt": text,
                       **{k: v for k, v in record.items() if k != "id"}}
        problem = limits.problem(text)
        if problem:
            new[REJECTED] = problem
        add_provenance(new, COMMAND, sampler.provenance(request=plan.request.name, shots=plan.shots))
        made.append(new)
    return StepResult(made, failed)


@dataclass
class Sieve:
    """Every batch's new prompts, in order: the marked dropped, duplicates dropped, at most
    ``target`` kept; ``counts`` says why each of the others went."""

    target: int
    index: DuplicateIndex
    kept: int = 0
    counts: Counter = field(default_factory=Counter)
    surplus: int = 0
    judged: int = 0       # replies seen this run
    since_kept: int = 0   # of them, those after the last one kept

    @property
    def full(self) -> bool:
        return self.kept >= self.target

    @property
    def stalled(self) -> bool:
        return not self.full and self.since_kept >= STALL

    def add_seeds(self, plan: Plan) -> None:
        self.index.add_texts([ORIGINS["seed"] + s for s in plan.seeds], list(plan.seeds.values()))

    def add_held_out(self, records: Sequence[Record]) -> None:
        """Prompts that no new one may repeat, never shown to the model (evaluation prompts:
        a training prompt that repeats one would leak the test into training)."""
        texts = [m["content"] for r in records for m in conversation(r) if m["role"] == "user"]
        self.index.add_texts([f"{ORIGINS['held_out']}{i}" for i in range(len(texts))], texts)

    def add_written(self, records: Sequence[Record]) -> None:
        """What an earlier run wrote (``--resume``): counted, and checked against."""
        texts = [r["prompt"] for r in records if isinstance(r.get("prompt"), str)]
        self.index.add_texts([str(r.get("id")) for r in records], texts)
        self.kept += len(texts)

    def __call__(self, result: StepResult) -> StepResult:
        waiting = []
        for record in result.records:
            if str(record.get("id")) in result.failed:
                continue
            self.judged += 1
            self.since_kept += 1
            problem = record.pop(REJECTED, None)
            if problem:
                self.counts[problem] += 1
            else:
                waiting.append(record)
        kept = []
        matches = self.index.check_texts([r["id"] for r in waiting], [r["prompt"] for r in waiting])
        for record, match in zip(waiting, matches):
            if match is not None:
                origin = next((k for k, prefix in ORIGINS.items() if match.of.startswith(prefix)),
                              "output")
                kind = "duplicate" if match.kind == "exact" else "near_duplicate"
                self.counts[f"{kind}_{origin}"] += 1
            elif self.full:
                self.surplus += 1
            else:
                self.kept += 1
                self.since_kept = 0
                kept.append(record)
        return StepResult(kept, result.failed)

    def summary(self) -> str:
        dropped = sum(self.counts.values())
        parts = [f"{self.counts[k]} {label}" for k, label in REASONS.items() if self.counts[k]]
        text = f"{self.kept} new prompts kept; {dropped} dropped"
        if parts:
            text += f" ({', '.join(parts)})"
        if self.surplus:
            text += f"; {self.surplus} beyond -n left out"
        return text

    def shortfall(self, limit: int) -> str | None:
        """Why the run ended with fewer than ``target`` kept (``limit``: the requests it could
        make), or None."""
        if self.full:
            return None
        if self.stalled:
            return (f"stopped after {self.judged} requests with {self.kept} of {self.target} "
                    f"prompts kept: the last {self.since_kept} replies all failed the filters, "
                    "so the rest would too; loosen --near-duplicates or the length limits, or "
                    "give other seeds or another model")
        return (f"stopped after {limit} requests with {self.kept} of {self.target} prompts kept: "
                "raise --max-requests, or loosen --near-duplicates or the length limits")
