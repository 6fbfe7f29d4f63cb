"""The numbers of each section, computed in one pass over each file.

Tables and plots cover every record; only the browsable sample is bounded (a seeded
reservoir of :data:`SAMPLE` records), so a run of any size is read in memory that does not
grow with it.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from caitool.summary import words
from caitool.view import as_text

Record = dict[str, Any]
SAMPLE = 60
HISTOGRAM_BINS = 10
CALIBRATION_BINS = 10


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return as_text(value)
    return None


class Reservoir:
    """A uniform sample of at most ``size`` items of a stream of unknown length."""

    def __init__(self, size: int = SAMPLE, seed: int = 0):
        self.size, self.seen, self.items = size, 0, []
        self.random = random.Random(seed)

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self.random.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item


# -- the supervised stage ------------------------------------------------------------------


@dataclass
class RoundStats:
    records: int = 0
    changed: int = 0
    words_before: int = 0
    words_after: int = 0


@dataclass
class PrincipleStats:
    drawn: int = 0
    changed: int = 0
    length_change: int = 0

    @property
    def mean_length_change(self) -> float:
        return self.length_change / self.drawn if self.drawn else 0.0


@dataclass
class Supervised:
    records: int = 0
    other: int = 0
    rounds: dict[int, RoundStats] = field(default_factory=lambda: defaultdict(RoundStats))
    principles: dict[str, PrincipleStats] = field(default_factory=lambda: defaultdict(PrincipleStats))
    sample: Reservoir = field(default_factory=Reservoir)

    def add(self, record: Record) -> None:
        revisions, previous = record.get("revisions"), _text(record.get("initial_response"))
        if not isinstance(revisions, list) or previous is None:
            self.other += 1
            return
        self.records += 1
        for number, entry in enumerate(revisions, start=1):
            revision = _text(entry.get("revision")) if isinstance(entry, dict) else None
            if revision is None:
                break
            changed = revision.strip() != previous.strip()
            before, after = words(previous), words(revision)
            stats = self.rounds[number]
            stats.records += 1
            stats.changed += changed
            stats.words_before += before
            stats.words_after += after
            principle = self.principles[str(entry.get("principle", "?"))[:200]]
            principle.drawn += 1
            principle.changed += changed
            principle.length_change += after - before
            previous = revision
        self.sample.add(record)


def supervised(records: Iterable[Record]) -> Supervised:
    out = Supervised()
    for record in records:
        out.add(record)
    return out


# -- the judge -----------------------------------------------------------------------------


@dataclass
class Agreement:
    pairs: int = 0
    agree: int = 0
    p_sum: float = 0.0

    @property
    def share(self) -> float | None:
        return self.agree / self.pairs if self.pairs else None


@dataclass
class Judge:
    """One preference file's labels: how decided, how consistent, how biased to a position."""

    pairs: int = 0
    other: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    p_sum: float = 0.0
    ties: int = 0
    agree: int = 0
    agree_known: int = 0
    first_position_sum: float = 0.0
    judgments: int = 0
    principles: dict[str, Agreement] = field(default_factory=lambda: defaultdict(Agreement))

    def add(self, record: Record) -> None:
        p = _number(record.get("p_chosen"))
        if p is None or "chosen" not in record or "rejected" not in record:
            self.other += 1
            return
        self.pairs += 1
        self.p_sum += p
        # p_chosen lies in [0.5, 1]: the bins span that half.
        self.histogram[min(HISTOGRAM_BINS - 1, max(0, int((p - 0.5) * 2 * HISTOGRAM_BINS)))] += 1
        self.ties += record.get("tie") is True
        if isinstance(record.get("orders_agree"), bool):
            self.agree_known += 1
            self.agree += record["orders_agree"]
        picks: dict[str, dict[str, int]] = defaultdict(dict)
        for detail in record.get("judgments") or []:
            if not isinstance(detail, dict):
                continue
            first, order = _number(detail.get("p_first")), detail.get("order")
            if first is None or order not in ("ab", "ba"):
                continue
            # p_first is about the pair's first response; in order "ba" that one was shown second.
            self.first_position_sum += first if order == "ab" else 1.0 - first
            self.judgments += 1
            picks[str(detail.get("principle", "?"))[:200]][order] = (first > 0.5) - (first < 0.5)
        for principle, by_order in picks.items():
            entry = self.principles[principle]
            entry.pairs += 1
            entry.agree += len(by_order) == 2 and len(set(by_order.values())) == 1

    @property
    def mean_p(self) -> float | None:
        return self.p_sum / self.pairs if self.pairs else None

    @property
    def agreement(self) -> float | None:
        return self.agree / self.agree_known if self.agree_known else None

    @property
    def first_position(self) -> float | None:
        return self.first_position_sum / self.judgments if self.judgments else None


def judge(records: Iterable[Record]) -> Judge:
    out = Judge()
    for record in records:
        out.add(record)
    return out


@dataclass
class Calibration:
    rows: int = 0
    other: int = 0
    bins: list[list[float]] = field(
        default_factory=lambda: [[0, 0.0, 0.0] for _ in range(CALIBRATION_BINS)])  # n, conf, credit

    @property
    def ece(self) -> float | None:
        """Expected calibration error: the rows' share in each confidence bin times the gap
        between the bin's mean confidence and its accuracy, summed."""
        if not self.rows:
            return None
        return sum(n / self.rows * abs(conf / n - credit / n) for n, conf, credit in self.bins if n)

    @property
    def accuracy(self) -> float | None:
        return sum(b[2] for b in self.bins) / self.rows if self.rows else None

    def points(self) -> list[tuple[float, float, int]]:
        """(mean confidence, accuracy, rows) of each bin that holds rows."""
        return [(conf / n, credit / n, int(n)) for n, conf, credit in self.bins if n]


def calibration(rows: Iterable[Record]) -> Calibration:
    """The judge's confidence in its top option (the softmax of its option scores) against
    how often the top option was right (eval-mc's credit)."""
    out = Calibration()
    for row in rows:
        credit = _number(row.get("credit"))
        scores = [_number(s) for s in [*(row.get("correct_scores") or []),
                                       *(row.get("incorrect_scores") or [])]
                  if isinstance(row.get("correct_scores"), list)]
        scores = [s for s in scores if s is not None]
        if credit is None or len(scores) < 2 or not isinstance(row.get("incorrect_scores"), list):
            out.other += 1
            continue
        top = max(scores)
        total = sum(math.exp(s - top) for s in scores)
        confidence = 1.0 / total
        out.rows += 1
        entry = out.bins[min(CALIBRATION_BINS - 1, int(confidence * CALIBRATION_BINS))]
        entry[0] += 1
        entry[1] += confidence
        entry[2] += credit
    return out


# -- the reward model and RL ---------------------------------------------------------------


def reward_model(lines: list[Record]) -> Record | None:
    """The held-out line of train-rm's metrics (the last, should it have been written twice)."""
    found = [line for line in lines if isinstance(line.get("heldout_by_file"), dict)]
    return found[-1] if found else None


def score_pairs(heldout: Record) -> tuple[list[float], list[float]]:
    chosen, rejected = [], []
    for pair in heldout.get("heldout_scores") or []:
        if isinstance(pair, list) and len(pair) == 2:
            c, r = _number(pair[0]), _number(pair[1])
            if c is not None and r is not None:
                chosen.append(c)
                rejected.append(r)
    return chosen, rejected


# What each trainer logs as its reward, KL and response length, first match wins: PPO's
# objective/*, RLOO's and GRPO's own names, DPO's implicit rewards.
RL_SERIES = {
    "reward": ("objective/scores", "reward", "rewards/chosen"),
    "KL": ("objective/kl", "kl", "rewards/margins"),
    "response length": ("completions/mean_length",),
    "loss": ("loss", "train_loss"),
}


def _points(lines: list[Record], value_of) -> list[tuple[float, float]]:
    points = []
    for line in lines:
        step, value = _number(line.get("step")), value_of(line)
        if step is not None and value is not None:
            points.append((step, value))
    return points


def _ended(line: Record) -> float | None:
    """The share of a step's responses that ended (an end-of-text token) within the limit:
    PPO's ended_fraction, or one minus RLOO's and GRPO's clipped ratio."""
    ended = _number(line.get("ended_fraction"))
    if ended is not None:
        return ended
    clipped = _number(line.get("completions/clipped_ratio"))
    return None if clipped is None else 1.0 - clipped


def rl_series(lines: list[Record]) -> dict[str, list[tuple[float, float]]]:
    """Name -> (step, value) points, for each series the metrics hold."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, keys in RL_SERIES.items():
        for key in keys:
            points = _points(lines, lambda line, key=key: _number(line.get(key)))
            if points:
                out[f"{name} ({key})"] = points
                break
    ended = _points(lines, _ended)
    if ended:
        out["ended responses (share)"] = ended
    return out


def ended_share(lines: list[Record]) -> float | None:
    """The mean ended share over the logged steps."""
    values = [v for line in lines if (v := _ended(line)) is not None]
    return sum(values) / len(values) if values else None


# -- evaluation ----------------------------------------------------------------------------


def disagreements(judgments: Iterable[Record], keep: int = 5) -> list[Record]:
    """The judged prompts where two systems differ most (the judge's verdict farthest from a
    tie), the most decided ``keep`` per dimension."""
    best: dict[str, list[tuple[float, int, Record]]] = defaultdict(list)
    for count, record in enumerate(judgments):
        p = _number(record.get("p_a"))
        if p is None or not isinstance(record.get("a"), str) or not isinstance(record.get("b"), str):
            continue
        kept = best[str(record.get("dimension", "?"))]
        kept.append((abs(p - 0.5), -count, {k: record.get(k) for k in ("id", "a", "b", "p_a", "dimension")}))
        if len(kept) > 4 * keep:  # bounded: trim to the best now and then
            kept.sort(reverse=True, key=lambda item: item[:2])
            del kept[keep:]
    out = []
    for kept in best.values():
        kept.sort(reverse=True, key=lambda item: item[:2])
        out += [entry for _, _, entry in kept[:keep]]
    return out
