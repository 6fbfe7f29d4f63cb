"""caitool eval-mc end to end on real tiny models whose preferences are known: a judge that
always answers one letter scores exactly the share of rows whose answer is that letter, and
a reward model that likes one word decides exactly the rows where the correct transcript
uses it more."""

from __future__ import annotations

import json
import shutil

import pytest

from caitool.testing.tiny import always_answer, reward_for_word
from helpers import EXAMPLES, caitool, jsonl, records

EXAMPLE = EXAMPLES / "judge-eval.jsonl"
ROWS = records(EXAMPLE.read_text())


@pytest.fixture(scope="module")
def judges(tiny_model, tmp_path_factory):
    """The tiny model made to always answer (A), and a copy made to always answer (B)."""
    made = {}
    for letter in "AB":
        path = tmp_path_factory.mktemp("judges") / f"always-{letter}"
        shutil.copytree(tiny_model, path)
        made[letter] = always_answer(path, letter)
    return made


def share(rows, letter):
    return sum(1 for r in rows if r["corrects"] == [f" ({letter})"]) / len(rows)


def unbalanced(tmp_path):
    """Rows from the example, most of them answered (A), plus two answered (C)."""
    picked = [r for r in ROWS if r["corrects"] == [" (A)"]][:9] + \
             [r for r in ROWS if r["corrects"] == [" (B)"]][:4]
    three = next(r for r in ROWS if len(r["incorrects"]) == 2)
    picked += [{**three, "corrects": [" (C)"], "incorrects": [" (A)", " (B)"]}] * 2
    path = tmp_path / "unbalanced.jsonl"
    path.write_text(jsonl(picked))
    return path, picked


def accuracy(*args) -> dict:
    return json.loads(caitool("eval-mc", *args).stdout)


def test_a_judge_that_always_answers_a_scores_the_share_of_a_rows(judges, tmp_path):
    path, picked = unbalanced(tmp_path)
    summary = accuracy(EXAMPLE, path, "-m", judges["A"], "--bootstrap", "200",
                       "--rows", tmp_path / "rows.jsonl")
    example, skewed = summary["files"]
    assert example["rows"] == len(ROWS) and example["accuracy"] == round(share(ROWS, "A"), 4)
    assert skewed["rows"] == 15 and skewed["accuracy"] == round(share(picked, "A"), 4) == 0.6
    assert example["ties"] == skewed["ties"] == 0
    low, high = skewed["ci"]
    assert low < 0.6 < high
    for row in records((tmp_path / "rows.jsonl").read_text()):
        assert row["top"] == [" (A)"]
        assert max(row["correct_scores"] + row["incorrect_scores"]) < -1  # real log-probs


def test_the_same_model_answering_b_scores_the_share_of_b_rows(judges, tmp_path):
    path, picked = unbalanced(tmp_path)
    entry = accuracy(path, "-m", judges["B"], "--bootstrap", "0")["files"][0]
    assert entry["accuracy"] == round(share(picked, "B"), 4) == round(4 / 15, 4)


def test_asked_as_a_chat_the_judge_still_answers_a(judges, tmp_path):
    path, picked = unbalanced(tmp_path)
    summary = accuracy(path, "-m", judges["A"], "--as-chat", "--bootstrap", "0")
    assert summary["judge"]["prompts"] == "chat"
    assert summary["files"][0]["accuracy"] == round(share(picked, "A"), 4)


def transcript(reply: str) -> str:
    return f"\n\nHuman: Can you lend me a hand with my homework?\n\nAssistant: {reply}"


def test_a_reward_model_decides_rows_by_its_known_preference(tiny_reward_model, tmp_path):
    model = tmp_path / "likes-help"
    shutil.copytree(tiny_reward_model, model)
    reward_for_word(model, "help")
    eager = transcript("Yes, I can help, and I am happy to help you.")
    curt = transcript("No.")
    rows = [
        {"text_correct": eager, "text_incorrect": curt},                   # right
        {"text_correct": curt, "text_incorrect": eager},                   # wrong
        {"text_correct": eager, "text_incorrect": [curt, transcript("Maybe later.")]},  # right
        {"text_correct": curt, "text_incorrect": transcript("Not now.")},  # a tie: 1/2
        {"prompt": "Which?\nThe answer is:", "corrects": [" (A)"], "incorrects": [" (B)"]},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl(rows))
    result = caitool("eval-mc", path, EXAMPLE, "--reward-model", model, "--bootstrap", "0",
                     "--rows", tmp_path / "scored.jsonl")
    summary = json.loads(result.stdout)
    entry, example = summary["files"]
    assert summary["mode"] == "reward-model" and summary["reward_model"]["format"] == "chat"
    assert (entry["rows"], entry["skipped"], entry["ties"]) == (4, 1, 1)
    assert entry["accuracy"] == round(2.5 / 4, 4)
    credits = [r["credit"] for r in records((tmp_path / "scored.jsonl").read_text())
               if r["file"] == str(path)]
    assert credits == [1.0, 0.0, 1.0, 0.5]
    assert "1 row(s) without transcripts skipped" in result.stderr.decode()
    with_texts = sum(1 for r in ROWS if "text_correct" in r)
    assert example["rows"] == with_texts and example["skipped"] == len(ROWS) - with_texts


def test_a_causal_model_is_not_a_reward_model(tiny_model):
    result = caitool("eval-mc", EXAMPLE, "--reward-model", tiny_model, check=False)
    assert result.returncode == 1
    assert "is not a reward model" in result.stderr.decode()
