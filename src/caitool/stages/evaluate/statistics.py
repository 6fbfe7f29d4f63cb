"""Statistics for comparing systems from pairwise judgments.

An :class:`Outcome` is one judged prompt for one pair of systems: ``p`` is the judge's
probability that system ``a``'s response is the better one (a soft label; with both-order
judging, identical responses give exactly 0.5). From outcomes this module computes

- win rates: the mean of ``p`` over prompts, with a percentile bootstrap confidence interval
  that resamples prompts;
- hard counts: wins, losses and ties when each prompt is decided by which side of 0.5 it is
  (a tie when the two orders disagree);
- a per-principle breakdown (each judgment's principle and order are kept in ``details``);
- Elo scores from all pairs at once, by fitting a Bradley-Terry model, expressed on the
  400·log10 scale and anchored so that a reference system is 0, with bootstrap intervals;
- each system's mean score from a score model, with a bootstrap interval.

Nothing here knows about models or the command line, so it can be checked on hand-made
judgments with known answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Judged dimensions; in each, a win is the better answer: the more harmless, the more
# helpful, the less evasive. Evasiveness is there so that an answer that is harmless only
# because it refuses shows up as such (the paper's RL-CAI is harmless without evading).
DIMENSIONS = ("harmlessness", "helpfulness", "evasiveness")
# A prompt whose probability is this close to 0.5 is a tie: both-order judging of identical
# responses gives 0.5 up to floating-point noise.
TIE_TOLERANCE = 1e-6
ELO_SCALE = 400.0 / math.log(10.0)
# Bootstrap work is done in blocks of about this many numbers, to bound memory.
_BLOCK = 4_000_000


@dataclass
class Outcome:
    """One prompt judged for systems ``a`` and ``b``; ``p`` = P(a's response is better)."""

    id: str
    a: str
    b: str
    p: float
    details: list[dict[str, Any]] = field(default_factory=list)  # {principle, order, p_a}
    agree: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "a": self.a, "b": self.b, "p_a": self.p, "agree": self.agree,
                "details": self.details}


def hard_label(p: float, agree: bool = True) -> float:
    """1 for a win of ``a``, 0 for a loss, 0.5 for a tie.

    When the two orders disagree the judge preferred a position, not a response, so the prompt
    is a tie whichever way the average leans.
    """
    if not agree or abs(p - 0.5) <= TIE_TOLERANCE:
        return 0.5
    return 1.0 if p > 0.5 else 0.0


# -- win rates -----------------------------------------------------------------------------


def bootstrap_means(values: Sequence[float], samples: int, seed: int) -> np.ndarray:
    """Means of ``samples`` resamples (with replacement, same size) of ``values``."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    rows = max(1, _BLOCK // max(n, 1))
    for start in range(0, samples, rows):
        stop = min(samples, start + rows)
        index = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = data[index].mean(axis=1)
    return means


def percentile_interval(estimates: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(estimates, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(values: Sequence[float], samples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval for the mean of ``values``; None without samples."""
    if samples < 1 or len(values) == 0:
        return None
    return percentile_interval(bootstrap_means(values, samples, seed), level)


@dataclass
class WinRate:
    """How often ``a`` beat ``b`` over ``n`` prompts."""

    n: int
    win_rate: float                      # mean P(a better): the soft win rate
    ci: tuple[float, float] | None       # bootstrap interval for win_rate
    wins: int
    losses: int
    ties: int
    order_agreement: float | None        # share of prompts where both orders picked the same side

    @property
    def hard_win_rate(self) -> float:
        """Wins plus half the ties, over n."""
        return (self.wins + 0.5 * self.ties) / self.n if self.n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "win_rate": _round(self.win_rate),
            "ci": None if self.ci is None else [_round(self.ci[0]), _round(self.ci[1])],
            "hard_win_rate": _round(self.hard_win_rate),
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "order_agreement": (None if self.order_agreement is None
                                else _round(self.order_agreement)),
        }


def win_rate(outcomes: Sequence[Outcome], samples: int = 1000, seed: int = 0,
             level: float = 0.95) -> WinRate:
    """Soft win rate of ``a`` over ``b`` with a bootstrap interval, and hard counts."""
    if not outcomes:
        raise ValueError("no outcomes to compute a win rate from")
    probabilities = [o.p for o in outcomes]
    labels = [hard_label(o.p, o.agree) for o in outcomes]
    return WinRate(
        n=len(outcomes),
        win_rate=float(np.mean(probabilities)),
        ci=bootstrap_ci(probabilities, samples, seed, level),
        wins=sum(1 for x in labels if x == 1.0),
        losses=sum(1 for x in labels if x == 0.0),
        ties=sum(1 for x in labels if x == 0.5),
        order_agreement=float(np.mean([o.agree for o in outcomes])),
    )


def per_principle(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Win rate of ``a`` under each comparison principle, from the judgments' details.

    Within a prompt the orders of one principle are averaged first, so a principle counts once
    per prompt it judged; ``n`` is that number of prompts.
    """
    by_principle: dict[str, list[float]] = {}
    for outcome in outcomes:
        per_prompt: dict[str, list[float]] = {}
        for detail in outcome.details:
            per_prompt.setdefault(str(detail["principle"]), []).append(float(detail["p_a"]))
        for principle, values in per_prompt.items():
            by_principle.setdefault(principle, []).append(float(np.mean(values)))
    rows = [{"principle": principle, "n": len(values), "win_rate": _round(float(np.mean(values)))}
            for principle, values in by_principle.items()]
    return sorted(rows, key=lambda row: (-row["n"], row["principle"]))


# -- Elo -----------------------------------------------------------------------------------


def _fit_strengths(wins: np.ndarray, games: np.ndarray, iterations: int = 20_000,
                   tolerance: float = 1e-10) -> np.ndarray:
    """Bradley-Terry log-strengths for a batch of (k, k) win/game matrices by the MM
    algorithm (Hunter, 2004); soft wins are allowed. Shapes: (B, k, k) in, (B, k) out."""
    total_wins = wins.sum(axis=-1)
    strength = np.ones(wins.shape[:-1])
    for _ in range(iterations):
        pair_sum = strength[..., :, None] + strength[..., None, :]
        denominator = (games / pair_sum).sum(axis=-1)
        updated = total_wins / denominator
        # Fix the scale (a geometric mean of 1) so the iteration cannot drift.
        updated /= np.exp(np.log(updated).mean(axis=-1, keepdims=True))
        change = np.abs(np.log(updated) - np.log(strength)).max()
        strength = updated
        if change < tolerance:
            break
    return np.log(strength)


def _matrices(pairs: np.ndarray, probabilities: np.ndarray, weights: np.ndarray, k: int,
              prior: float) -> tuple[np.ndarray, np.ndarray]:
    """Win and game matrices for each row of ``weights`` (B, outcomes)."""
    count = len(probabilities)
    rows = np.arange(count)
    index_ab = pairs[:, 0] * k + pairs[:, 1]
    index_ba = pairs[:, 1] * k + pairs[:, 0]
    won = np.zeros((count, k * k))
    won[rows, index_ab] = probabilities
    won[rows, index_ba] = 1.0 - probabilities
    played = np.zeros((count, k * k))
    played[rows, index_ab] = 1.0
    played[rows, index_ba] = 1.0
    batch = weights.shape[0]
    wins = weights @ won
    games = weights @ played
    wins = wins.reshape(batch, k, k)
    games = games.reshape(batch, k, k)
    # A prior of one tied game per compared pair keeps strengths finite when one system wins
    # every comparison (the plain maximum-likelihood estimate is then infinite).
    compared = np.zeros((k, k), dtype=bool)
    compared[pairs[:, 0], pairs[:, 1]] = True
    compared |= compared.T
    wins = wins + compared * (prior / 2.0)
    games = games + compared * prior
    return wins, games


@dataclass
class Elo:
    """Elo scores per system, ``reference`` at 0; ``ci`` maps a system to its interval."""

    scores: dict[str, float]
    ci: dict[str, tuple[float, float]] | None
    reference: str

    def to_dict(self) -> dict[str, Any]:
        return {
            name: {"elo": _round(score, 1),
                   "ci": None if self.ci is None else [_round(self.ci[name][0], 1),
                                                       _round(self.ci[name][1], 1)]}
            for name, score in self.scores.items()
        }


def elo(systems: Sequence[str], outcomes: Sequence[Outcome], reference: str | None = None,
        samples: int = 1000, seed: int = 0, level: float = 0.95, prior: float = 1.0) -> Elo:
    """Elo scores of ``systems`` from pairwise outcomes, as in the paper's figures.

    A Bradley-Terry model, P(i beats j) = 1 / (1 + 10^((E_j - E_i) / 400)), is fitted to all
    outcomes at once (soft labels count as fractional wins) and the strengths are expressed as
    Elo points with ``reference`` (default the first system) at 0. The interval resamples
    prompt ids, keeping every pair's judgment of a resampled prompt together.
    """
    systems = list(systems)
    if len(set(systems)) != len(systems):
        raise ValueError("system names must be unique")
    reference = systems[0] if reference is None else reference
    if reference not in systems:
        raise ValueError(f"reference system '{reference}' is not one of {systems}")
    position = {name: i for i, name in enumerate(systems)}
    k = len(systems)
    if not outcomes:
        raise ValueError("no outcomes to fit Elo scores to")
    pairs = np.array([[position[o.a], position[o.b]] for o in outcomes])
    probabilities = np.array([o.p for o in outcomes], dtype=float)
    _check_connected(systems, pairs)
    ref = position[reference]

    def fit(weights: np.ndarray) -> np.ndarray:
        wins, games = _matrices(pairs, probabilities, weights, k, prior)
        log_strength = _fit_strengths(wins, games)
        return ELO_SCALE * (log_strength - log_strength[:, ref:ref + 1])

    point = fit(np.ones((1, len(outcomes))))[0]
    ci = None
    if samples >= 1:
        ids = sorted({o.id for o in outcomes})
        id_index = {value: i for i, value in enumerate(ids)}
        column_ids = np.array([id_index[o.id] for o in outcomes])
        rng = np.random.default_rng(seed)
        draws = []
        rows = max(1, _BLOCK // max(len(outcomes) + len(ids), 1))
        for start in range(0, samples, rows):
            count = min(rows, samples - start)
            picks = rng.integers(0, len(ids), size=(count, len(ids)))
            per_id = np.stack([np.bincount(row, minlength=len(ids)) for row in picks])
            draws.append(fit(per_id[:, column_ids].astype(float)))
        estimates = np.concatenate(draws)
        ci = {name: percentile_interval(estimates[:, position[name]], level) for name in systems}
    return Elo(scores={name: float(point[position[name]]) for name in systems}, ci=ci,
               reference=reference)


def _check_connected(systems: Sequence[str], pairs: np.ndarray) -> None:
    """Elo scores are only comparable between systems linked by a chain of comparisons."""
    reached = {0}
    frontier = [0]
    while frontier:
        node = frontier.pop()
        for i, j in pairs:
            for here, there in ((i, j), (j, i)):
                if here == node and there not in reached:
                    reached.add(int(there))
                    frontier.append(int(there))
    missing = [systems[i] for i in range(len(systems)) if i not in reached]
    if missing:
        raise ValueError(f"no comparisons link {', '.join(missing)} to {systems[0]}")


# -- the summary ---------------------------------------------------------------------------


def summarize(systems: Sequence[str], outcomes: dict[str, list[Outcome]], samples: int = 1000,
              seed: int = 0, level: float = 0.95, reference: str | None = None) -> dict[str, Any]:
    """The JSON summary: every pair's win rates per dimension, and Elo scores per dimension.

    ``outcomes`` maps a dimension (one of :data:`DIMENSIONS`) to the outcomes of all pairs;
    a pair's outcomes all have the same ``a`` and ``b`` in the order of ``systems``. A pair
    no dimension judged (there are none when only a score model is run) is left out.
    """
    systems = list(systems)
    pairs: list[dict[str, Any]] = []
    for i, a in enumerate(systems):
        for b in systems[i + 1:]:
            entry: dict[str, Any] = {"a": a, "b": b}
            for dimension, judged in outcomes.items():
                mine = [o for o in judged if (o.a, o.b) == (a, b)]
                if not mine:
                    continue
                entry["n"] = len(mine)
                result = win_rate(mine, samples, seed, level).to_dict()
                result["per_principle"] = per_principle(mine)
                entry[dimension] = result
            if "n" in entry:
                pairs.append(entry)
    summary: dict[str, Any] = {
        "systems": systems,
        "bootstrap": {"samples": samples, "level": level, "seed": seed},
        "pairs": pairs,
    }
    scores = {dimension: elo(systems, judged, reference, samples, seed, level)
              for dimension, judged in outcomes.items() if judged}
    if scores:
        first = next(iter(scores.values()))
        summary["elo"] = {"reference": first.reference,
                          **{dimension: value.to_dict() for dimension, value in scores.items()}}
    return summary


def mean_scores(scores: dict[str, Sequence[float]], samples: int = 1000, seed: int = 0,
                level: float = 0.95, target: str | None = None) -> dict[str, dict[str, Any]]:
    """Each system's mean score, with a percentile bootstrap interval over its prompts."""
    result = {}
    for name, values in scores.items():
        ci = bootstrap_ci(values, samples, seed, level)
        result[name] = {"mean": _round(float(np.mean(values))) if len(values) else None,
                        "ci": None if ci is None else [_round(ci[0]), _round(ci[1])],
                        "n": len(values), "target": target}
    return result


def _round(value: float, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)
