"""AI feedback: a model judges which of two responses is better under comparison principles.

The label follows the paper: the judge sees the conversation, one comparison principle and
the two responses as options (A) and (B) after an answer cue, and the log-probabilities of
the continuations " (A)" and " (B)" are normalised into a probability. Beyond the paper:

* both orders (A, B) and (B, A) are judged and averaged, which cancels position bias;
* several principles can be sampled per pair (seeded by the pair's id) and averaged;
* principles that ask for the *worse* response have their label inverted;
* chain of thought: the judge writes its reasoning first, then the options are scored, and
  each judgment is clamped (CoT labels are nearly 0 or 1).

Every backend call is batched: all orders and principles of all pairs go to one ``score()``
call (plus one ``generate()`` call for the reasoning with CoT).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

from caitool import render
from caitool.backends.base import Backend, SamplingParams
from caitool.constitution import ComparisonPrinciple, Constitution
from caitool.errors import CaitoolError
from caitool.render import Prompt

COT_CLAMP = (0.4, 0.6)
ORDERS = ("ab", "ba")


@dataclass
class JudgeSettings:
    both_orders: bool = True           # judge (first, second) and (second, first), average
    principles: int = 1                # K principles sampled per pair (seeded); 0 = all of them
    cot: bool = False                  # chain of thought, then score the options
    clamp: tuple[float, float] | None = None   # per judgment; default (0.4, 0.6) when cot
    seed: int = 0
    fmt: str = "auto"                  # "chat", "raw", or "auto" (chat if the model has a template)
    max_new_tokens: int = 256          # for cot reasoning
    temperature: float = 0.0           # for cot reasoning (greedy)

    def effective_clamp(self) -> tuple[float, float] | None:
        return self.clamp if self.clamp is not None else (COT_CLAMP if self.cot else None)

    def check(self, constitution: Constitution) -> None:
        constitution.require_comparisons()
        if self.principles < 0:
            raise CaitoolError("principles per pair must be at least 1 (or 0 for all)")
        if self.principles > len(constitution.comparisons):
            raise CaitoolError(
                f"{self.principles} principles per pair asked for, but constitution "
                f"'{constitution.name}' has {len(constitution.comparisons)} comparison principles")
        render.check_format(self.fmt)
        check_clamp(self.clamp)
        if self.cot and self.max_new_tokens < 1:
            raise CaitoolError("the reasoning needs at least 1 new token")
        if self.temperature < 0:
            raise CaitoolError("the reasoning temperature must be >= 0")


@dataclass
class PairItem:
    id: str                            # record id (used to seed principle sampling)
    messages: list[dict[str, str]]     # the conversation (schema.conversation(record))
    first: str                         # response 1
    second: str                        # response 2


@dataclass
class Judgment:
    """The verdict on one pair. Every probability here, overall and per detail, is about the
    item's ``first`` response, whichever order it was shown in and whether or not the
    principle asked for the worse response: the orientation is fixed here, once."""

    p_first: float                     # P(first is better), after inversion, averaging, clamping
    details: list[dict] = field(default_factory=list)
    # one per (principle, order): {"principle": id, "order": "ab"|"ba", "p_first": float}
    # (plus "reasoning" with CoT); "ab" showed the first response as (A), "ba" as (B)
    agree: bool = True                 # both orders picked the same response (True: one order)
    method: str = "logprobs"           # "logprobs" or "sampled"


def check_clamp(clamp: tuple[float, float] | None) -> None:
    if clamp is None:
        return
    low, high = clamp
    if not 0.0 <= low <= 0.5 <= high <= 1.0:
        raise CaitoolError(f"clamp range {low},{high} must satisfy 0 <= LO <= 0.5 <= HI <= 1")


def parse_clamp(text: str | None) -> tuple[float, float] | None:
    """``"LO,HI"`` as a checked pair of floats."""
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise CaitoolError(f"--clamp must look like LO,HI (e.g. 0.4,0.6), not '{text}'") from None
    check_clamp((low, high))
    return low, high


def normalise(logprob_a: float, logprob_b: float) -> float:
    """P(A) from the two options' log-probabilities: a softmax over just those two."""
    if logprob_a == logprob_b:
        return 0.5  # also covers both -inf (a sampled fallback that saw neither)
    if logprob_a == -math.inf:
        return 0.0
    if logprob_b == -math.inf:
        return 1.0
    return 1.0 / (1.0 + math.exp(logprob_b - logprob_a))


def sample_principles(constitution: Constitution, item_id: str, k: int,
                      seed: int) -> list[ComparisonPrinciple]:
    """K distinct principles for one pair, fixed by the seed and the pair's id (so a resumed
    or re-sharded run picks the same ones); k = 0 means all of them, in order."""
    if k == 0:
        return list(constitution.comparisons)
    rng = random.Random(f"{seed}:compare:{item_id}")
    return rng.sample(constitution.comparisons, k)


def _pick(p_first: float) -> int:
    """Which response a judgment picked: 1 first, -1 second, 0 neither."""
    return (p_first > 0.5) - (p_first < 0.5)


def _clamp(p: float, clamp: tuple[float, float] | None) -> float:
    return p if clamp is None else min(max(p, clamp[0]), clamp[1])


def _reasoning_seed(seed: int, items: list[PairItem]) -> int:
    key = f"{seed}:reasoning:" + ",".join(item.id for item in items)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


@dataclass
class _Request:
    item: int
    principle: ComparisonPrinciple
    order: str

    def options(self, item: PairItem) -> tuple[str, str]:
        return (item.first, item.second) if self.order == "ab" else (item.second, item.first)


def requests_for(constitution: Constitution, items: list[PairItem],
                 settings: JudgeSettings) -> list[_Request]:
    orders = ORDERS if settings.both_orders else ORDERS[:1]
    return [
        _Request(index, principle, order)
        for index, item in enumerate(items)
        for principle in sample_principles(constitution, item.id, settings.principles,
                                           settings.seed)
        for order in orders
    ]


def judge_format(backend: Backend, settings: JudgeSettings) -> render.Format:
    """The prompt format the judge is asked in."""
    return render.resolve_format(settings.fmt, backend.has_chat_template(), backend.model)


def judge(backend: Backend, constitution: Constitution, items: list[PairItem],
          settings: JudgeSettings) -> list[Judgment]:
    """Batched: all orders and principles of all items go to the backend in one score() call
    (plus one generate() call for CoT reasoning)."""
    if not items:
        return []
    settings.check(constitution)
    fmt = judge_format(backend, settings)
    clamp = settings.effective_clamp()
    requests = requests_for(constitution, items, settings)

    def prompt(request: _Request, reasoning: str | None = None) -> Prompt:
        first, second = request.options(items[request.item])
        return render.comparison_prompt(constitution, items[request.item].messages,
                                         request.principle, first, second, fmt,
                                         reasoning=reasoning, cot=settings.cot)

    reasonings: list[str | None] = [None] * len(requests)
    if settings.cot:
        params = SamplingParams(max_new_tokens=settings.max_new_tokens,
                                temperature=settings.temperature, n=1,
                                stop=render.reasoning_stop(constitution),
                                seed=_reasoning_seed(settings.seed, items))
        outputs = backend.generate([prompt(r) for r in requests], params)
        reasonings = [samples[0].strip() for samples in outputs]
    final = [prompt(r, reasoning) for r, reasoning in zip(requests, reasonings, strict=True)]
    scores = backend.score(final, [list(render.OPTIONS) for _ in requests])

    per_item: list[list[tuple[_Request, float, str | None]]] = [[] for _ in items]
    methods: list[set[str]] = [set() for _ in items]
    for request, reasoning, score in zip(requests, reasonings, scores, strict=True):
        p_a = normalise(score.logprobs[0], score.logprobs[1])
        # Order "ba" shows the second response as (A): (B) is the first response.
        p_first = p_a if request.order == "ab" else 1.0 - p_a
        if request.principle.inverted:
            p_first = 1.0 - p_first
        per_item[request.item].append((request, _clamp(p_first, clamp), reasoning))
        methods[request.item].add(score.method)

    judgments = []
    for entries, used in zip(per_item, methods, strict=True):
        details = []
        picks: dict[str, dict[str, int]] = {}
        for request, p_first, reasoning in entries:
            detail = {"principle": request.principle.id, "order": request.order,
                      "p_first": p_first}
            if settings.cot:
                detail["reasoning"] = reasoning
            details.append(detail)
            picks.setdefault(request.principle.id, {})[request.order] = _pick(p_first)
        agree = all(len(set(by_order.values())) == 1 for by_order in picks.values())
        p_first = sum(d["p_first"] for d in details) / len(details)
        method = "sampled" if "sampled" in used else "logprobs"
        judgments.append(Judgment(p_first=p_first, details=details, agree=agree, method=method))
    return judgments
