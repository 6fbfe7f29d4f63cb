"""The paper's absolute harmfulness score: `train-rm --target` learns a rating it can see
(the word "toxic" rates 4, "kind" 0), from caitool records and from red-team transcripts as
`caitool import` keeps them, and `eval --score-model` gives each system's mean rating with
an interval, with the judge or without it."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from helpers import caitool, jsonl, records
from train_helpers import FAST, PROMPTS, WORDS, metrics


def reply(rng: random.Random, word: str) -> str:
    before = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
    after = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
    return f"{before} {word} {after}"


def rated_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"rated-{seed}-{i}", "prompt": f"{rng.choice(PROMPTS)} ({i})",
             "response": reply(rng, "toxic" if i % 2 else "kind"), "rating": 4 if i % 2 else 0}
            for i in range(n)]


def red_team_rows(n: int, seed: int) -> list[dict]:
    """Rows in the published red-team shape: a whole transcript and its rating."""
    rng = random.Random(seed)
    return [{"transcript": f"\n\nHuman: {rng.choice(PROMPTS)} (attempt {i})\n\nAssistant: "
                          f"{reply(rng, 'toxic' if i % 2 else 'kind')}",
             "rating": 4.0 if i % 2 else 0.0, "task_description": "a test"} for i in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("score-model")
    rated = root / "rated.jsonl"
    rated.write_text(jsonl(rated_rows(80, seed=1)))
    published = root / "red_team_attempts.jsonl.gz"
    published.write_bytes(gzip.compress(json.dumps(red_team_rows(40, seed=2)).encode()))
    attempts = root / "attempts.jsonl"
    attempts.write_bytes(caitool("import", "jsonl", published, "--field", "transcript").stdout)
    result = caitool("train-rm", rated, attempts, "--target", "rating", "-m", tiny_model,
                     "-o", root / "harm", "--epochs", "4", "--learning-rate", "2e-3",
                     "--batch-size", "8", "--eval-split", "0.2", *FAST)
    return {"root": root, "model": root / "harm", "result": result, "files": (rated, attempts)}


def test_the_held_out_error_falls_far_below_predicting_the_mean(trained):
    lines = metrics(trained["result"].stdout)
    (report,) = [line for line in lines if "heldout_mse" in line]
    assert report["heldout_examples"] == 24
    # Half the ratings are 0 and half 4: the training mean, about 2, is off by about 2 each.
    assert report["heldout_baseline_mse"] == pytest.approx(4.0, abs=0.5)
    assert report["heldout_mse"] < 0.25 * report["heldout_baseline_mse"], report
    assert report["heldout_mae"] < 0.5 * report["heldout_baseline_mae"], report
    rated, attempts = trained["files"]
    by_file = report["heldout_by_file"]
    assert [by_file[str(f)]["heldout_examples"] for f in (rated, attempts)] == [16, 8]
    err = trained["result"].stderr.decode()
    assert "96 training examples, 24 held out (target rating: mean" in err
    assert "held-out error: MSE" in err

    summary = json.loads((trained["model"] / "caitool_training.json").read_text())
    assert summary["objective"] == "regression" and summary["target"] == "rating"
    assert summary["normalization"]["method"] == "standardise"
    assert summary["normalization"]["std"] > 0
    assert summary["heldout_mse"] == report["heldout_mse"]

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(trained["model"])
    assert config.num_labels == 1 and config.problem_type == "regression"


def system(tmp_path, name: str, word: str, n: int = 8) -> str:
    rng = random.Random(7)
    path = tmp_path / f"{name}.jsonl"
    path.write_text(jsonl([{"id": f"q{i}", "prompt": f"{PROMPTS[i % len(PROMPTS)]} (new {i})",
                            "response": reply(rng, word)} for i in range(n)]))
    return str(path)


def test_eval_reports_each_systems_mean_rating_without_a_judge(trained, tmp_path):
    kind, toxic = system(tmp_path, "kind", "kind"), system(tmp_path, "toxic", "toxic")
    judgments = tmp_path / "scores.jsonl"
    result = caitool("eval", "--score-model", trained["model"], "--only", "score", kind, toxic,
                     "--bootstrap", "200", "--judgments", judgments)
    summary = json.loads(result.stdout)
    assert summary["pairs"] == [] and "judge" not in summary and "elo" not in summary
    scores = summary["scores"]
    for name in ("kind", "toxic"):
        entry = scores[name]
        assert entry["n"] == 8 and entry["target"] == "rating"
        assert entry["ci"][0] <= entry["mean"] <= entry["ci"][1]
    # In the rating's own units: near 0 and near 4, not on the standardised scale.
    assert scores["kind"]["mean"] < 1.0 < 3.0 < scores["toxic"]["mean"]
    assert scores["kind"]["ci"][1] < scores["toxic"]["ci"][0]
    assert summary["score_model"]["objective"] == "regression"
    assert "mean rating" in result.stderr.decode() and "Score model, per response" in result.stderr.decode()
    lines = records(judgments.read_text())
    assert len(lines) == 16 and {line["dimension"] for line in lines} == {"score"}

    one = json.loads(caitool("eval", "--score-model", trained["model"], "--only", "score",
                             toxic, "--bootstrap", "0").stdout)
    assert one["scores"]["toxic"]["ci"] is None
    assert one["scores"]["toxic"]["mean"] == pytest.approx(scores["toxic"]["mean"], abs=1e-3)


def test_eval_scores_beside_the_judged_dimensions(trained, tmp_path, tiny_model):
    kind, toxic = system(tmp_path, "kind", "kind", 3), system(tmp_path, "toxic", "toxic", 3)
    result = caitool("eval", "-m", tiny_model, kind, toxic, "--score-model", trained["model"],
                     "--only", "evasiveness", "--bootstrap", "50")
    summary = json.loads(result.stdout)
    [pair] = summary["pairs"]
    assert pair["evasiveness"]["n"] == 3 and "harmlessness" not in pair
    assert summary["scores"]["toxic"]["mean"] > summary["scores"]["kind"]["mean"]
    assert summary["judge"]["constitutions"] == {"evasiveness": "engaged"}


def test_a_model_that_is_not_a_classifier_is_one_line(tmp_path, tiny_model):
    kind = system(tmp_path, "kind", "kind", 2)
    result = caitool("eval", "--score-model", tiny_model, "--only", "score", kind, check=False)
    err = result.stderr.decode()
    assert result.returncode == 1 and "is not a reward model" in err and "Traceback" not in err
