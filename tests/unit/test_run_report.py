"""`caitool report`'s numbers on small run directories built by hand, where each number is
known by construction: revisions per round and per principle, the judge's position bias and
agreement, calibration, the reward model's and RL's figures, the evaluation's."""

from __future__ import annotations

import math

import pytest

from caitool.run_report import build, numbers
from report_checks import SECTIONS, mc_row, percent, section_ids, small_run, supervised


def test_per_round_and_per_principle_counts():
    stats = numbers.supervised([
        supervised(1, [("kind", "base 1 but kinder"), ("honest", "base 1 but kinder")]),
        supervised(2, [("kind", "base 2"), ("kind", "new 2 here now")]),
        {"id": "x", "prompt": "not a supervised record"},
    ])
    assert stats.records == 2 and stats.other == 1
    first, second = stats.rounds[1], stats.rounds[2]
    assert (first.records, first.changed, first.words_before, first.words_after) == (2, 1, 4, 6)
    assert (second.records, second.changed, second.words_before, second.words_after) == (2, 1, 6, 8)
    kind, honest = stats.principles["kind"], stats.principles["honest"]
    # kind: round 1 of s1 (+2 words, changed), round 1 of s2 (0, unchanged), round 2 of s2 (+2).
    assert (kind.drawn, kind.changed, kind.mean_length_change) == (3, 2, pytest.approx(4 / 3))
    assert (honest.drawn, honest.changed, honest.mean_length_change) == (1, 0, 0)


def test_judge_position_bias_agreement_and_ties():
    from report_checks import preference

    stats = numbers.judge([
        preference(1, 0.9, [("harm", "ab", 0.8), ("harm", "ba", 0.4)], False),
        preference(2, 0.5, [("harm", "ab", 0.7), ("harm", "ba", 0.6), ("help", "ab", 0.2),
                            ("help", "ba", 0.3)], True),
        {"id": "p", "prompt": "no pair here"},
    ])
    assert stats.pairs == 2 and stats.other == 1 and stats.ties == 1
    assert stats.mean_p == pytest.approx(0.7) and stats.agreement == 0.5
    # The first position's probability: p_first in order ab, 1 - p_first in order ba.
    assert stats.first_position == pytest.approx((0.8 + 0.6 + 0.7 + 0.4 + 0.2 + 0.7) / 6)
    # harm: record 1 picks first (0.8) then second (0.4): disagree; record 2 agrees.
    assert (stats.principles["harm"].pairs, stats.principles["harm"].agree) == (2, 1)
    assert (stats.principles["help"].pairs, stats.principles["help"].agree) == (1, 1)
    assert stats.histogram[8] == 1 and stats.histogram[0] == 1  # p 0.9 and 0.5


def test_calibration_and_expected_calibration_error():
    # Confidence in the top option 0.5 (a tie, credit 0.5), then 0.75 right and 0.75 wrong.
    rows = [mc_row(0.0, 0.0), mc_row(math.log(3), 0.0), mc_row(0.0, math.log(3)),
            {"credit": 1.0, "correct_scores": [None], "incorrect_scores": []}]
    stats = numbers.calibration(rows)
    assert stats.rows == 3 and stats.other == 1
    assert stats.points() == [(0.5, 0.5, 1), (pytest.approx(0.75), 0.5, 2)]
    # Bin 0.5: no gap; bin 0.75: a gap of 0.25 over two thirds of the rows.
    assert stats.ece == pytest.approx(0.25 * 2 / 3)
    assert stats.accuracy == pytest.approx(0.5)
    perfect = numbers.calibration([mc_row(math.log(9), 0.0)] * 9 + [mc_row(0.0, math.log(9))])
    assert perfect.ece == pytest.approx(0.0, abs=1e-9)


def test_rl_series_and_ended_share():
    lines = [{"step": 1, "reward": 0.5, "kl": 0.1, "completions/clipped_ratio": 0.25,
              "completions/mean_length": 30},
             {"step": 2, "reward": 0.7, "kl": 0.2, "completions/clipped_ratio": 0.75}]
    series = numbers.rl_series(lines)
    assert series["reward (reward)"] == [(1.0, 0.5), (2.0, 0.7)]
    assert series["response length (completions/mean_length)"] == [(1.0, 30.0)]
    assert numbers.ended_share(lines) == pytest.approx(0.5)


def test_the_reservoir_is_bounded_and_uniform():
    sample = numbers.Reservoir(size=10, seed=1)
    for i in range(10_000):
        sample.add(i)
    assert len(sample.items) == 10 and sample.seen == 10_000
    assert max(sample.items) > 1000  # not just the first ones


def test_a_whole_report_from_a_small_run(tmp_path):
    run = small_run(tmp_path / "run")
    page, problems = build(str(run), quiet=True)
    assert problems == []
    assert section_ids(page) == list(SECTIONS)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for shown in ("Expected calibration error: <strong>0.167</strong>", percent(0.1234),
                  "381.7", "-70.4", "<del>", "<ins>", 'data-principles="|honest| |kind|"',
                  "judge (harmless)", "Ended responses", "50.0%", "Where the systems differ most",
                  "RL says.", "Base says.", "The judge is at chance: it answered 50.0% right"):
        assert shown in page, shown
    assert page.count("<svg") >= 6


def test_a_run_cut_short_gives_a_shorter_report_and_says_why(tmp_path):
    run = small_run(tmp_path / "run")
    for name in ("eval.json", "ppo-metrics.jsonl", "judgments.jsonl"):
        (run / name).unlink()
    with open(run / "rm-metrics.jsonl", "a") as handle:
        handle.write('{"command": "train-rm", "step": 5, "heldout')  # torn by a kill
    (run / "prefs.jsonl").write_text('{"id": "only a prompt", "prompt": "Q?"}\n')
    page, problems = build(str(run), quiet=True)
    assert section_ids(page) == ["run", "supervised", "judge", "reward"]
    assert "Not in this run (no data for them): RL, Evaluation." in page
    assert len(problems) == 2
    assert f"{run / 'rm-metrics.jsonl'}:3: invalid JSON" in problems[0] or \
        f"{run / 'rm-metrics.jsonl'}:3: invalid JSON" in problems[1]
    assert any("prefs.jsonl: 1 record(s) are not preference records" in p for p in problems)
    assert page.count('class="incomplete"') == 2  # the judge's and the reward model's sections


def test_the_command_writes_the_page(tmp_path):
    from helpers import run_cli

    run = small_run(tmp_path / "run")
    result = run_cli("report", str(run))
    assert result.returncode == 0, result.stderr
    assert section_ids((run / "report.html").read_text()) == list(SECTIONS)
    missing = run_cli("report", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "nowhere: no such directory" in str(missing.stderr)


def test_a_self_graded_evaluation_is_marked_above_its_numbers(tmp_path):
    import json

    run = small_run(tmp_path / "run")
    page, _ = build(str(run), quiet=True)
    assert 'id="not-independent"' not in page and "never agree" not in page
    summary = json.loads((run / "eval.json").read_text())
    summary["pairs"][0]["helpfulness"]["order_agreement"] = 0.0
    summary["independence"] = {"evaluator": "judge-x", "independent": False, "systems": {
        "rl-cai": {"evaluator_labelled_training_data": True, "evaluator_wrote_training_data": False,
                   "evaluator_wrote_responses": False},
        "base": {"evaluator_labelled_training_data": False, "evaluator_wrote_training_data": False,
                 "evaluator_wrote_responses": False}}}
    (run / "eval.json").write_text(json.dumps(summary))
    page, problems = build(str(run), quiet=True)
    assert problems == []
    evaluation = page[page.index('<section id="evaluation">'):]
    mark = evaluation.index('id="not-independent"')
    assert mark < evaluation.index("Win rates")
    assert "rl-cai: trained on preference labels from the evaluator (judge-x) itself" in evaluation
    assert "never agree for base vs rl-cai, helpfulness:" in evaluation
    assert "base vs rl-cai, harmlessness:" not in evaluation
