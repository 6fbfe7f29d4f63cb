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
call (plus one ``generate()`` call for the reasoning with CoT). A pair any of whose requests
failed for good (a remote server that kept erroring) gets no judgment, only the reason; the
other pairs of the batch are judged as usual.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from caitool import render
from caitool.backends.base import Backend, OptionScores, RequestsFailed, SamplingParams
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
    (plus one generate() call for CoT reasoning). Raises :class:`RequestsFailed` (by item)
    when some item could not be judged; :func:`judge_each` returns them instead."""
    judgments, failed = judge_each(backend, constitution, items, settings)
    if failed:
        raise RequestsFailed(failed, judgments)
    return judgments  # type: ignore[return-value]


def _unusable(score: OptionScores) -> str | None:
    """Why a backend's scores cannot make a label (NaN, or +inf), else None."""
    if any(math.isnan(v) or v == math.inf for v in score.logprobs[:2]):
        shown = ", ".join(f"{v:g}" for v in score.logprobs[:2])
        return f"the judge's option scores are not log-probabilities ({shown})"
    return None


def _ask(call: Callable[[], list], live: list[int], failed: dict[int, str],
         owner: list[int]) -> list:
    """``call`` on the requests at ``live``; the item of each request that fails for good
    is added to ``failed`` (its first reason), and that request's result is None."""
    try:
        return call()
    except RequestsFailed as exc:
        for position, reason in sorted(exc.failures.items()):
            failed.setdefault(owner[live[position]], reason)
        return exc.results


def judge_each(backend: Backend, constitution: Constitution, items: list[PairItem],
               settings: JudgeSettings) -> tuple[list[Judgment | None], dict[int, str]]:
    """Like :func:`judge`, but an item whose requests failed for good gets None and its
    reason (by index in ``failed``), and the other items are judged as usual."""
    if not items:
        return [], {}
    settings.check(constitution)
    fmt = judge_format(backend, settings)
    clamp = settings.effective_clamp()
    requests = requests_for(constitution, items, settings)

    def prompt(request: _Request, reasoning: str | None = None, step: str = "judge") -> Prompt:
        first, second = request.options(items[request.item])
        return render.comparison_prompt(constitution, items[request.item].messages,
                                         request.principle, first, second, fmt,
                                         reasoning=reasoning, cot=settings.cot,
                                         ).serving(items[request.item].id, step)

    owner = [request.item for request in requests]
    failed: dict[int, str] = {}
    reasonings: list[str | None] = [None] * len(requests)
    if settings.cot:
        params = SamplingParams(max_new_tokens=settings.max_new_tokens,
                                temperature=settings.temperature, n=1,
                                stop=render.reasoning_stop(constitution),
                                seed=_reasoning_seed(settings.seed, items))
        every = list(range(len(requests)))
        outputs = _ask(lambda: backend.generate([prompt(r, step="reasoning") for r in requests], params),
                       every, failed, owner)
        reasonings = [samples[0].strip() if samples else None for samples in outputs]
    live = [k for k, request in enumerate(requests) if request.item not in failed]
    scores: list[OptionScores | None] = [None] * len(requests)
    if live:
        got = _ask(lambda: backend.score([prompt(requests[k], reasonings[k]) for k in live],
                                         [list(render.OPTIONS) for _ in live]),
                   live, failed, owner)
        for k, score in zip(live, got, strict=True):
            scores[k] = score
            why = _unusable(score) if score is not None else "no scores came back"
            if why:
                failed.setdefault(owner[k], why)

    per_item: list[list[tuple[_Request, float, str | None]]] = [[] for _ in items]
    methods: list[set[str]] = [set() for _ in items]
    for request, reasoning, score in zip(requests, reasonings, scores, strict=True):
        if request.item in failed or score is None:
            continue
        p_a = normalise(score.logprobs[0], score.logprobs[1])
        # Order "ba" shows the second response as (A): (B) is the first response.
        p_first = p_a if request.order == "ab" else 1.0 - p_a
        if request.principle.inverted:
            p_first = 1.0 - p_first
        per_item[request.item].append((request, _clamp(p_first, clamp), reasoning))
        methods[request.item].add(score.method)

    judgments: list[Judgment | None] = []
    for index, (entries, used) in enumerate(zip(per_item, methods, strict=True)):
        if index in failed:
            judgments.append(None)
            continue
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
    return judgments, failed
