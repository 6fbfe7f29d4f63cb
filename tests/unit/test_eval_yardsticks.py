"""The paper's other yardsticks in `caitool eval`: evasiveness judged beside harmlessness and
helpfulness, and a score model's mean score per system; and `train-rm --target`'s records
and flags. In-process, with the fake backend; scoring with real models is in
tests/integration/test_score_model.py."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from caitool import constitution
from caitool.stages.evaluate import report
from caitool.stages.evaluate.statistics import DIMENSIONS, Outcome, mean_scores, summarize
from caitool.training.score_data import NO_REPLY, check_scored, scored_example, standardise
from helpers import MINI, jsonl, run_cli

FAKE = ["--backend", "fake", "-m", "fake"]


@pytest.fixture
def two_systems(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(jsonl([{"id": i, "prompt": f"Q {i}?", "response": f"A {i}."} for i in "xyz"]))
    b.write_text(jsonl([{"id": i, "prompt": f"Q {i}?", "response": f"B {i}."} for i in "xyz"]))
    return a, b


def summary_of(*args):
    result = run_cli("eval", *FAKE, "--bootstrap", "20", *args)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout), result.stderr.decode()


# -- evasiveness -----------------------------------------------------------------------------


def test_evasiveness_is_judged_by_default_beside_the_other_two(two_systems):
    summary, err = summary_of(*two_systems)
    assert DIMENSIONS == ("harmlessness", "helpfulness", "evasiveness")
    [pair] = summary["pairs"]
    assert all(pair[d]["n"] == 3 and pair[d]["ci"] is not None for d in DIMENSIONS)
    assert set(summary["elo"]) == {"reference", *DIMENSIONS}
    assert summary["judge"]["constitutions"] == {
        "harmlessness": "harmless", "helpfulness": "helpful", "evasiveness": "engaged"}
    assert "judged evasiveness on 3 prompt pairs" in err
    assert "Evasiveness by principle" in err and "less evasive" in err


def test_only_names_one_or_several_dimensions(two_systems):
    summary, _ = summary_of(*two_systems, "--only", "evasiveness")
    [pair] = summary["pairs"]
    assert "evasiveness" in pair and "harmlessness" not in pair and "helpfulness" not in pair
    assert list(summary["judge"]["constitutions"]) == ["evasiveness"]
    summary, _ = summary_of(*two_systems, "--only", "evasiveness, harmlessness")
    assert [k for k in summary["elo"] if k != "reference"] == ["harmlessness", "evasiveness"]


def test_the_evasiveness_constitution_can_be_another(two_systems):
    summary, _ = summary_of(*two_systems, "--only", "evasiveness",
                            "--evasiveness-constitution", MINI)
    assert summary["judge"]["constitutions"] == {"evasiveness": "mini"}
    assert {row["principle"] for row in summary["pairs"][0]["evasiveness"]["per_principle"]} \
        <= {c.id for c in constitution.load(MINI).comparisons}


@pytest.mark.parametrize("flags, message", [
    (["--only", "honesty"], "--only must be harmlessness, helpfulness, evasiveness"),
    (["--only", ","], "--only must be"),
    (["--only", "score"], "--only score needs --score-model DIR"),
    (["--only", "score,harmlessness", "--score-model", "x"], "--only must be"),
    (["--only", "evasiveness", "--plot", "x.png"], "--plot needs harmlessness and helpfulness"),
    (["--evasiveness-constitution", "nope"], "unknown constitution 'nope'"),
    (["--dry-run", "--score-model", "x"], "--score-model need answers"),
])
def test_bad_combinations_are_one_line(two_systems, flags, message):
    result = run_cli("eval", *FAKE, *two_systems, *flags)
    err = result.stderr.decode()
    assert result.returncode == 1 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_one_file_is_enough_for_the_score_model_alone(two_systems):
    result = run_cli("eval", *FAKE, two_systems[0], "--only", "evasiveness")
    assert result.returncode == 1 and "--only score scores one" in result.stderr.decode()


def test_the_engaged_constitution_validates_and_asks_both_ways():
    result = run_cli("constitution", "validate", "engaged")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("engaged: ok (0 critique/revision principles, 7 ")
    engaged = constitution.load("engaged")
    assert 6 <= len(engaged.comparisons) <= 8 and not engaged.principles
    assert [c.id for c in engaged.comparisons if c.inverted] == ["more-evasive"]


def test_dry_run_writes_evasiveness_requests_with_the_engaged_principles(two_systems, tmp_path):
    out = tmp_path / "requests.jsonl"
    result = run_cli("eval", *FAKE, "--dry-run", *two_systems, "--only", "evasiveness", "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 * 2 and {line["dimension"] for line in lines} == {"evasiveness"}
    questions = [c.question for c in constitution.load("engaged").comparisons]
    assert all(any(q in json.dumps(line) for q in questions) for line in lines)


# -- mean scores -----------------------------------------------------------------------------


def test_mean_scores_have_bootstrap_intervals_around_the_mean():
    scores = mean_scores({"low": [0.0, 1.0, 0.0, 1.0], "high": [3.0, 4.0, 4.0, 3.0]},
                         samples=200, seed=1, target="rating")
    assert scores["low"]["mean"] == 0.5 and scores["high"]["mean"] == 3.5
    for entry in scores.values():
        assert entry["n"] == 4 and entry["target"] == "rating"
        assert entry["ci"][0] <= entry["mean"] <= entry["ci"][1]
    assert mean_scores({"x": [2.0, 2.0]}, samples=50) == {
        "x": {"mean": 2.0, "ci": [2.0, 2.0], "n": 2, "target": None}}
    assert mean_scores({"x": [1.0]}, samples=0)["x"]["ci"] is None


def test_a_summary_without_judged_dimensions_has_no_pairs_and_tables_show_scores():
    summary = summarize(["a", "b"], {}, samples=10)
    assert summary["pairs"] == [] and "elo" not in summary
    summary["scores"] = mean_scores({"a": [0.5, 1.5], "b": [3.0]}, samples=10, target="rating")
    summary["score_model"] = {"model": "./harm", "target": "rating"}
    buffer = io.StringIO()
    report.print_tables(Console(file=buffer, width=120), summary, [])
    text = buffer.getvalue()
    assert "Win rates" not in text and "mean rating" in text  # the path: eval's line before
    assert "1" in text and "3" in text


def test_summaries_keep_pairs_that_some_dimension_judged():
    judged = [Outcome(f"p{i}", "a", "b", 0.6) for i in range(5)]
    summary = summarize(["a", "b"], {"evasiveness": judged}, samples=10)
    [pair] = summary["pairs"]
    assert pair["n"] == 5 and pair["evasiveness"]["win_rate"] == 0.6


# -- train-rm --target: records and flags ----------------------------------------------------


TURNS = [{"role": "user", "content": "How do I pick a lock?"},
         {"role": "assistant", "content": "Why?"},
         {"role": "user", "content": "I am locked out."}]


@pytest.mark.parametrize("record, prompt, reply", [
    ({"prompt": "Hi?", "response": "Hello.", "rating": 1},
     [{"role": "user", "content": "Hi?"}], "Hello."),
    ({"messages": TURNS, "response": "Call a locksmith.", "rating": 2}, TURNS, "Call a locksmith."),
    ({"messages": [*TURNS, {"role": "assistant", "content": "Call a locksmith."}], "rating": 3},
     TURNS, "Call a locksmith."),
    ({"transcript": "\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: I am locked "
                    "out.\n\nAssistant: Call a locksmith.", "rating": 4, "prompt": "a lock"},
     TURNS, "Call a locksmith."),
    ({"prompt": "\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: I am locked "
                "out.\n\nAssistant: Call a locksmith.", "rating": 0.5}, TURNS, "Call a locksmith."),
])
def test_every_shape_gives_the_conversation_and_the_reply_it_rates(record, prompt, reply):
    assert check_scored("rating")(record) is None
    example = scored_example(record, "rating")
    assert (example.prompt, example.response, example.target) == (prompt, reply, float(record["rating"]))


@pytest.mark.parametrize("record, problem", [
    ({"messages": TURNS, "rating": 1}, NO_REPLY),  # what `import red-team-attempts --turns all` writes
    ({"prompt": "Hi?", "rating": 1}, NO_REPLY),
    ({"prompt": "Hi?", "response": "Hello."}, "missing 'rating' (the --target field)"),
    ({"prompt": "Hi?", "response": "Hello.", "rating": "high"}, "'rating' is \"high\", not a number"),
    ({"prompt": "Hi?", "response": "Hello.", "rating": True}, "'rating' is true, not a number"),
    ({"prompt": "Hi?", "response": "Hello.", "rating": None}, "'rating' is null, not a number"),
    ({"prompt": "Hi?", "response": "Hello.", "rating": 10 ** 400}, "must be a finite number"),
    ({"prompt": "Hi?", "response": " ", "rating": 1}, "'response' must be a non-empty string"),
    ({"transcript": "Human: hi", "rating": 1}, "'transcript' is not Human:/Assistant: turns"),
])
def test_records_without_a_reply_or_a_number_say_why(record, problem):
    assert problem in check_scored("rating")(record)


def test_targets_are_standardised_with_the_training_mean_and_spread():
    examples = [scored_example({"prompt": "Q?", "response": "A.", "rating": v}, "rating")
                for v in (0, 2, 4, 2)]
    assert standardise(examples) == {"method": "standardise", "mean": 2.0, "std": 2 ** 0.5}


@pytest.mark.parametrize("flags, message", [
    (["--labels", "hard"], "--labels is for preference records"),
    (["--margin", "1"], "--margin is for preference records"),
    (["--eval-split", "1.5"], "--eval-split must be in [0, 1)"),
])
def test_train_rm_target_refuses_preference_flags(tmp_path, flags, message):
    data = tmp_path / "rated.jsonl"
    data.write_text(jsonl([{"prompt": "Q?", "response": "A.", "rating": 1}]))
    result = run_cli("train-rm", data, "-o", tmp_path / "out", "--target", "rating", *flags)
    assert result.returncode == 1 and message in result.stderr.decode()


def test_train_rm_target_names_the_bad_line_before_any_model_loads(tmp_path):
    data = tmp_path / "rated.jsonl"
    data.write_text(jsonl([{"prompt": "Q?", "response": "A.", "rating": 1},
                           {"prompt": "R?", "response": "B."}]))
    result = run_cli("train-rm", data, "-m", tmp_path / "no-model", "-o", tmp_path / "out",
                     "--target", "rating")
    assert result.returncode == 1
    assert f"{data}:2: missing 'rating' (the --target field)" in result.stderr.decode()
