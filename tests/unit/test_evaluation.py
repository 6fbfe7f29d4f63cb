"""The evaluation statistics on hand-made judgments whose answers are known."""

from __future__ import annotations

import math
import random

import pytest

from caitool.stages.evaluate import statistics as evaluation
from caitool.stages.evaluate.statistics import Outcome, elo, per_principle, summarize, win_rate


def outcomes(ps, a="a", b="b", prefix="p"):
    return [Outcome(id=f"{prefix}{i}", a=a, b=b, p=p) for i, p in enumerate(ps)]


def coin_flips(n, seed, p_win=0.5):
    rng = random.Random(seed)
    return [1.0 if rng.random() < p_win else 0.0 for _ in range(n)]


# -- win rates -----------------------------------------------------------------------------


def test_identical_systems_tie_at_one_half():
    # Both-order judging of identical responses gives exactly 0.5 on every prompt.
    result = win_rate(outcomes([0.5] * 40))
    assert result.win_rate == 0.5
    assert result.ci == (0.5, 0.5)
    assert (result.wins, result.losses, result.ties) == (0, 0, 40)
    assert result.hard_win_rate == 0.5


def test_equal_systems_with_noisy_judgments_are_about_one_half_and_the_ci_covers_it():
    for seed in range(5):
        result = win_rate(outcomes(coin_flips(200, seed)), samples=1000, seed=seed)
        assert abs(result.win_rate - 0.5) < 0.1
        low, high = result.ci
        assert low < 0.5 < high
        assert high - low > 0.05  # real uncertainty, not a degenerate interval


def test_a_system_that_always_wins_is_near_100_percent():
    result = win_rate(outcomes([0.97, 0.99, 0.95, 0.98] * 25))
    assert result.win_rate > 0.95
    assert result.ci[0] > 0.95
    assert (result.wins, result.losses, result.ties) == (100, 0, 0)
    assert result.hard_win_rate == 1.0
    losing = win_rate(outcomes([0.02] * 30))
    assert losing.win_rate < 0.05 and losing.losses == 30


def test_win_rate_is_the_mean_of_soft_labels_and_hard_counts_use_one_half():
    result = win_rate(outcomes([0.9, 0.6, 0.5, 0.2]), samples=0)
    assert result.win_rate == pytest.approx(0.55)
    assert (result.wins, result.losses, result.ties) == (2, 1, 1)
    assert result.hard_win_rate == pytest.approx(2.5 / 4)
    assert result.ci is None  # --bootstrap 0


def test_bootstrap_is_deterministic_for_a_seed_and_varies_with_it():
    data = outcomes(coin_flips(60, 7))
    first = win_rate(data, samples=500, seed=3).ci
    assert win_rate(data, samples=500, seed=3).ci == first
    assert any(win_rate(data, samples=500, seed=s).ci != first for s in (4, 5, 6))


def test_the_interval_narrows_with_more_prompts():
    small = win_rate(outcomes(coin_flips(20, 1)), samples=1000, seed=0).ci
    large = win_rate(outcomes(coin_flips(2000, 1)), samples=1000, seed=0).ci
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def test_the_bootstrap_matches_the_normal_approximation_for_a_mean():
    values = coin_flips(400, 11, p_win=0.7)
    low, high = evaluation.bootstrap_ci(values, samples=4000, seed=0)
    mean = sum(values) / len(values)
    half_width = 1.96 * math.sqrt(mean * (1 - mean) / len(values))
    assert low == pytest.approx(mean - half_width, abs=0.01)
    assert high == pytest.approx(mean + half_width, abs=0.01)


def test_order_agreement_is_the_share_of_prompts_whose_orders_agree():
    data = outcomes([0.7, 0.6, 0.4, 0.5])
    data[0].agree = data[1].agree = data[2].agree = False
    assert win_rate(data).order_agreement == 0.25


def test_a_prompt_whose_orders_disagree_is_a_hard_tie_but_keeps_its_soft_label():
    data = outcomes([0.7, 0.7, 0.3, 0.3])
    data[1].agree = data[3].agree = False
    result = win_rate(data)
    assert (result.wins, result.losses, result.ties) == (1, 1, 2)
    assert result.win_rate == pytest.approx(0.5)


def test_hard_label_treats_floating_point_noise_at_one_half_as_a_tie():
    assert evaluation.hard_label(0.5 + 1e-9) == 0.5
    assert evaluation.hard_label(0.51) == 1.0
    assert evaluation.hard_label(0.49) == 0.0
    assert evaluation.hard_label(0.9, agree=False) == 0.5


# -- per principle -------------------------------------------------------------------------


def test_per_principle_averages_orders_within_a_prompt_then_prompts():
    data = [
        Outcome("1", "a", "b", 0.7, details=[
            {"principle": "kind", "order": "ab", "p_a": 0.8},
            {"principle": "kind", "order": "ba", "p_a": 0.6},
            {"principle": "safe", "order": "ab", "p_a": 0.3},
            {"principle": "safe", "order": "ba", "p_a": 0.1},
        ]),
        Outcome("2", "a", "b", 0.5, details=[
            {"principle": "kind", "order": "ab", "p_a": 0.4},
            {"principle": "kind", "order": "ba", "p_a": 0.4},
        ]),
    ]
    rows = {row["principle"]: row for row in per_principle(data)}
    assert rows["kind"] == {"principle": "kind", "n": 2, "win_rate": pytest.approx(0.55)}
    assert rows["safe"] == {"principle": "safe", "n": 1, "win_rate": pytest.approx(0.2)}


def test_a_judgment_becomes_an_outcome_about_the_first_system_in_both_orders():
    # The judge always answers (A): about a when a is shown first, about b when b is. Its
    # per-order probabilities are already about the first response it was given (a).
    from caitool import constitution
    from caitool.stages.evaluate.systems import System, outcome
    from caitool.stages.judging import JudgeSettings, PairItem, judge
    from caitool.testing.fake import FakeBackend

    rules = constitution.load("harmless")
    backend = FakeBackend("fake", script={"scores": [-0.1, -2.3]})
    item = PairItem(id="q1", messages=[{"role": "user", "content": "Hi"}], first="A!", second="B!")
    (judgment,) = judge(backend, rules, [item], JudgeSettings(principles=1))
    result = outcome("q1", System("a", "a.jsonl"), System("b", "b.jsonl"), judgment)
    by_order = {d["order"]: d["p_a"] for d in result.details}
    inverted = judgment.details[0]["principle"] in {p.id for p in rules.comparisons if p.inverted}
    first = 1 / (1 + math.exp(-2.2))
    expected_ab = 1 - first if inverted else first
    assert by_order["ab"] == pytest.approx(expected_ab)
    assert by_order["ba"] == pytest.approx(1 - expected_ab)
    assert result.p == pytest.approx(0.5) and result.agree is False


# -- Elo -----------------------------------------------------------------------------------


def expected(elo_i, elo_j):
    return 1.0 / (1.0 + 10 ** ((elo_j - elo_i) / 400.0))


def test_elo_recovers_known_ratings_from_their_expected_scores():
    truth = {"base": 0.0, "sft": 120.0, "rl": 300.0}
    names = list(truth)
    data = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            data += outcomes([expected(truth[a], truth[b])] * 500, a, b)
    result = elo(names, data, samples=0)
    for name, value in truth.items():
        assert result.scores[name] == pytest.approx(value, abs=1.0)
    assert result.reference == "base" and result.scores["base"] == 0.0


def test_elo_orders_three_systems_by_dominance_and_anchors_the_reference():
    data = (outcomes(coin_flips(80, 1, 0.8), "strong", "middle")
            + outcomes(coin_flips(80, 2, 0.8), "middle", "weak")
            + outcomes(coin_flips(80, 3, 0.95), "strong", "weak"))
    result = elo(["weak", "middle", "strong"], data, reference="middle", samples=300, seed=0)
    assert result.scores["middle"] == 0.0
    assert result.scores["weak"] < 0 < result.scores["strong"]
    for name, (low, high) in result.ci.items():
        assert low <= result.scores[name] <= high
    assert result.ci["middle"] == (0.0, 0.0)
    assert result.ci["weak"][1] < result.ci["strong"][0]


def elo_difference(p: float, n: int | None = None, prior: float = 1.0) -> float:
    """The Elo gap that a win rate ``p`` implies (400·log10(p / (1 - p))); with ``n`` the
    same tied-game prior as :func:`elo` keeps it finite at 0% and 100%."""
    if n is not None:
        p = (p * n + prior / 2.0) / (n + prior)
    if p <= 0.0 or p >= 1.0:
        return math.copysign(math.inf, p - 0.5)
    return 400.0 * math.log10(p / (1.0 - p))


def test_elo_of_two_systems_is_the_win_rate_elo_difference():
    data = outcomes([1.0] * 76 + [0.0] * 24)
    result = elo(["a", "b"], data, samples=0)
    assert -result.scores["b"] == pytest.approx(elo_difference(0.76, n=100), abs=0.01)
    assert elo_difference(0.76) == pytest.approx(400 * math.log10(0.76 / 0.24))


def test_elo_stays_finite_when_one_system_always_wins():
    result = elo(["a", "b"], outcomes([1.0] * 50), samples=100)
    assert 500 < -result.scores["b"] < 2000
    assert math.isfinite(result.ci["b"][0])
    assert math.isinf(elo_difference(1.0)) and math.isfinite(elo_difference(1.0, n=50))


def test_identical_systems_have_equal_elo():
    result = elo(["a", "b", "c"], outcomes([0.5] * 20, "a", "b") + outcomes([0.5] * 20, "a", "c")
                 + outcomes([0.5] * 20, "b", "c"), samples=200)
    for name in "abc":
        assert result.scores[name] == pytest.approx(0.0, abs=1e-6)


def test_elo_bootstrap_is_deterministic_for_a_seed():
    data = outcomes(coin_flips(40, 5, 0.6), "a", "b") + outcomes(coin_flips(40, 6, 0.4), "b", "c")
    first = elo(["a", "b", "c"], data, samples=200, seed=9).ci
    assert elo(["a", "b", "c"], data, samples=200, seed=9).ci == first


def test_elo_needs_every_system_linked_by_comparisons():
    with pytest.raises(ValueError, match="no comparisons link c"):
        elo(["a", "b", "c"], outcomes([0.6] * 5, "a", "b"), samples=0)


# -- the summary ---------------------------------------------------------------------------


def test_summary_has_every_pair_and_elo_per_dimension():
    judged = {
        "harmlessness": (outcomes(coin_flips(30, 1, 0.7), "x", "y")
                         + outcomes(coin_flips(30, 2, 0.7), "x", "z")
                         + outcomes(coin_flips(30, 3, 0.5), "y", "z")),
        "helpfulness": (outcomes([0.5] * 30, "x", "y") + outcomes([0.5] * 30, "x", "z")
                        + outcomes([0.5] * 30, "y", "z")),
    }
    summary = summarize(["x", "y", "z"], judged, samples=200, seed=1)
    assert summary["systems"] == ["x", "y", "z"]
    assert [(p["a"], p["b"]) for p in summary["pairs"]] == [("x", "y"), ("x", "z"), ("y", "z")]
    for pair in summary["pairs"]:
        for dimension in ("harmlessness", "helpfulness"):
            result = pair[dimension]
            assert result["n"] == 30
            assert 0.0 <= result["ci"][0] <= result["win_rate"] <= result["ci"][1] <= 1.0
    assert summary["pairs"][0]["helpfulness"]["win_rate"] == 0.5
    assert summary["elo"]["reference"] == "x"
    assert summary["elo"]["harmlessness"]["x"]["elo"] == 0.0
    assert summary["elo"]["harmlessness"]["y"]["elo"] < 0
    assert summary["elo"]["helpfulness"]["z"]["elo"] == pytest.approx(0.0, abs=0.1)
    assert summary["bootstrap"] == {"samples": 200, "level": 0.95, "seed": 1}
