"""caitool eval-mc in-process with the scripted fake backend: accuracy maths (ties earn 1/k,
rows with many options, per-file counts, the bootstrap interval), what the judge is asked,
bad rows named by file and line, and the shipped example file. The fake's option scores are
by position, and eval-mc asks options in the order of their text, so a script whose first
score is best is a judge that always answers (A). (A real tiny model answering (A) is in
tests/integration/test_eval_mc_cli.py.)"""

from __future__ import annotations

import json
import math

import pytest

from caitool.render import Prompt
from caitool.stages.evaluate import multiple_choice as mc
from caitool.stages.evaluate import reward_scoring
from caitool.testing.fake import FakeBackend
from helpers import EXAMPLES, jsonl, records, run_cli

LETTERS = "ABCDEFGHI"
CUE = "The answer is:"


def question(text: str = "Which is better?", options: int = 2) -> str:
    lines = "".join(f"\n ({LETTERS[i]}) [[[answer {i}]]]" for i in range(options))
    return f"\n\nConsider this.\n\n\n{text} Options:{lines}\n\n{CUE}"


def row(correct: str, options: int = 2, **extra) -> dict:
    """A row whose correct answer is the letter ``correct`` (several letters: several correct)."""
    letters = LETTERS[:options]
    return {"prompt": question(options=options),
            "corrects": [f" ({x})" for x in correct],
            "incorrects": [f" ({x})" for x in letters if x not in correct], **extra}


def judge(tmp_path, scores, chat_template=True) -> list[str]:
    """The fake judge whose option scores are ``scores``, by the options' letters."""
    script = tmp_path / "judge.json"
    script.write_text(json.dumps({"scores": list(scores), "chat_template": chat_template}))
    return ["--backend", "fake", "-m", str(script)]


def write(tmp_path, name: str, rows: list[dict]) -> str:
    path = tmp_path / name
    path.write_text(jsonl(rows))
    return str(path)


def evaluate(*args) -> dict:
    result = run_cli("eval-mc", *args)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


# -- accuracy ------------------------------------------------------------------------------


def test_a_judge_that_always_answers_a_scores_the_share_of_a_rows_per_file(tmp_path):
    first = write(tmp_path, "first.jsonl", [row("A"), row("B"), row("A", 3), row("C", 3)])
    second = write(tmp_path, "second.jsonl", [row("A"), row("A"), row("B", 3)])
    summary = evaluate(first, second, *judge(tmp_path, [-0.5, -1.5, -2.5]))
    assert summary["mode"] == "judge"
    one, two = summary["files"]
    assert (one["file"], one["rows"], one["accuracy"], one["correct"]) == (first, 4, 0.5, 2.0)
    assert (two["file"], two["rows"], two["accuracy"]) == (second, 3, round(2 / 3, 4))
    assert one["candidates"] == {"2": 2, "3": 2} and one["ties"] == 0
    assert one["chance"] == round((1 / 2 + 1 / 2 + 1 / 3 + 1 / 3) / 4, 4)
    assert summary["overall"]["rows"] == 7
    assert summary["overall"]["accuracy"] == round(4 / 7, 4)
    assert summary["judge"]["backend"] == "fake" and summary["judge"]["prompts"] == "raw"


def test_the_order_a_file_lists_its_options_in_does_not_matter(tmp_path):
    listed_backwards = {"prompt": question(), "corrects": [" (B)"], "incorrects": [" (A)"]}
    path = write(tmp_path, "rows.jsonl", [listed_backwards])
    assert evaluate(path, *judge(tmp_path, [-0.5, -1.5]))["files"][0]["accuracy"] == 0.0
    assert evaluate(path, *judge(tmp_path, [-1.5, -0.5]))["files"][0]["accuracy"] == 1.0


def test_ties_earn_the_correct_share_of_the_tied_options(tmp_path):
    tied_two = judge(tmp_path, [-1.0, -1.0, -4.0])
    for correct, credit in (("A", 0.5), ("B", 0.5), ("C", 0.0)):
        path = write(tmp_path, f"{correct}.jsonl", [row(correct, 3)])
        entry = evaluate(path, *tied_two)["files"][0]
        assert entry["accuracy"] == credit and entry["ties"] == 1
    all_tied = judge(tmp_path, [-2.0, -2.0, -2.0])
    path = write(tmp_path, "three.jsonl", [row("A", 3), row("AB", 3)])
    entry = evaluate(path, *all_tied, "--rows", str(tmp_path / "rows.jsonl"))["files"][0]
    assert entry["correct"] == round(1 / 3 + 2 / 3, 4)
    details = records((tmp_path / "rows.jsonl").read_text())
    assert [d["credit"] for d in details] == pytest.approx([1 / 3, 2 / 3])
    assert details[1]["top"] == [" (A)", " (B)", " (C)"]


def test_rows_with_up_to_nine_options(tmp_path):
    favours_e = judge(tmp_path, [-3.0, -3.0, -3.0, -3.0, -0.1, -3.0, -3.0, -3.0, -3.0])
    path = write(tmp_path, "nine.jsonl", [row("E", 9), row("A", 9), row("E", 5), row("B", 2)])
    entry = evaluate(path, *favours_e)["files"][0]
    assert entry["rows"] == 4 and entry["candidates"] == {"2": 1, "5": 1, "9": 2}
    # Two options of the 2-option row tie at -3.0: (B) earns 1/2.
    assert entry["correct"] == 2.5 and entry["ties"] == 1


def test_the_bootstrap_interval_brackets_the_accuracy_and_can_be_turned_off(tmp_path):
    path = write(tmp_path, "rows.jsonl", [row("A")] * 12 + [row("B")] * 8)
    entry = evaluate(path, *judge(tmp_path, [-0.5, -1.5]), "--seed", "3")["files"][0]
    low, high = entry["ci"]
    assert low < entry["accuracy"] == 0.6 < high and high - low > 0.1
    again = evaluate(path, *judge(tmp_path, [-0.5, -1.5]), "--seed", "3")["files"][0]
    assert again["ci"] == entry["ci"]
    assert evaluate(path, *judge(tmp_path, [-0.5, -1.5]), "--bootstrap", "0")["files"][0]["ci"] is None


def test_credit_by_hand():
    assert mc.Scored(1, [-1.0], [-2.0, -3.0]).credit == 1.0
    assert mc.Scored(1, [-2.0], [-1.0]).credit == 0.0
    assert mc.Scored(1, [-1.0], [-1.0 - 1e-9, -5.0]).credit == 0.5      # within the tolerance
    assert mc.Scored(1, [-math.inf], [-math.inf]).credit == 0.5          # saw neither
    assert mc.Scored(1, [math.nan], [-9.0]).credit == 0.0                # NaN is the worst
    assert mc.Scored(1, [-1.0, -1.0], [-1.0, -1.0]).tied == 4


# -- what the judge is asked ---------------------------------------------------------------


def test_prompts_are_used_as_given_or_as_a_chat_with_the_cue_opening_the_reply(tmp_path):
    path = write(tmp_path, "rows.jsonl", [row("B", 3), row("A")] * 3)
    file = mc.read_file(path)
    backend = FakeBackend("fake", script={"scores": [-1.0, -2.0, -3.0]})
    result = mc.score_with_judge(backend, file, as_chat=False, batch_size=4)
    assert [len(call.prompts) for call in backend.calls] == [4, 2]
    first = backend.calls[0]
    assert first.prompts[0] == Prompt.raw(question(options=3))
    assert first.options[0] == [" (A)", " (B)", " (C)"] and first.options[1] == [" (A)", " (B)"]
    assert [s.credit for s in result.scored] == [0.0, 1.0] * 3

    backend = FakeBackend("fake", script={"scores": [-1.0, -2.0, -3.0]})
    mc.score_with_judge(backend, file, as_chat=True)
    asked = backend.calls[0].prompts[0]
    assert asked.assistant_prefix == CUE
    assert asked.message_dicts() == [{"role": "user", "content": question(options=3)[:-len(CUE)].strip()}]


def test_as_chat_needs_a_chat_template(tmp_path):
    path = write(tmp_path, "rows.jsonl", [row("A")])
    result = run_cli("eval-mc", path, "--as-chat", *judge(tmp_path, [-1, -2], chat_template=False))
    assert result.returncode == 1 and "has no chat template" in result.stderr.decode()
    summary = evaluate(path, "--as-chat", *judge(tmp_path, [-1, -2]))
    assert summary["judge"]["prompts"] == "chat"


# -- input and output ----------------------------------------------------------------------


@pytest.mark.parametrize("line, problem", [
    ("not json", "invalid JSON"),
    (json.dumps({"prompt": "q", "corrects": [" (A)"]}), "has 'prompt' but no 'incorrects'"),
    (json.dumps({"prompt": "q", "corrects": [], "incorrects": [" (B)"]}),
     "'corrects' must be a non-empty list of strings"),
    (json.dumps({"prompt": "q", "corrects": " (A)", "incorrects": [" (B)"]}),
     "'corrects' must be a non-empty list of strings"),
    (json.dumps({"prompt": "", "corrects": [" (A)"], "incorrects": [" (B)"]}), "'prompt' must be"),
    (json.dumps({"prompt": "q", "corrects": [" (A)"], "incorrects": [" (A)"]}),
     "the option ' (A)' is given twice"),
    (json.dumps({"text_correct": "x"}), "has 'text_correct' but no 'text_incorrect'"),
    (json.dumps({"text_correct": "x", "text_incorrect": [""]}), "'text_incorrect' must hold"),
    (json.dumps({"question": "q"}), "missing 'prompt', 'corrects' and 'incorrects'"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path, line, problem):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl([row("A")]) + line + "\n")
    result = run_cli("eval-mc", str(path), *judge(tmp_path, [-1, -2]))
    assert result.returncode == 1
    message = result.stderr.decode().strip()
    assert message.startswith(f"caitool eval-mc: {path}:2: ") and problem in message
    assert "Traceback" not in message and result.stdout == b""


def test_skip_invalid_warns_counts_and_goes_on(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl([row("A")]) + "{oops\n" + jsonl([row("B")]))
    result = run_cli("eval-mc", str(path), "--skip-invalid", *judge(tmp_path, [-1, -2]))
    assert result.returncode == 0
    assert f"skipped {path}:2: invalid JSON" in result.stderr.decode()
    entry = json.loads(result.stdout)["files"][0]
    assert (entry["rows"], entry["invalid"], entry["accuracy"]) == (2, 1, 0.5)


def test_rows_without_options_are_skipped_and_none_at_all_is_an_error(tmp_path):
    texts = {"text_correct": "\n\nHuman: hi\n\nAssistant: hello", "text_incorrect": "go away"}
    mixed = write(tmp_path, "mixed.jsonl", [row("A"), texts])
    entry = evaluate(mixed, *judge(tmp_path, [-1, -2]))["files"][0]
    assert (entry["rows"], entry["skipped"]) == (1, 1)
    only_texts = write(tmp_path, "texts.jsonl", [texts])
    result = run_cli("eval-mc", only_texts, *judge(tmp_path, [-1, -2]))
    assert result.returncode == 1 and "no row to score" in result.stderr.decode()
    empty = write(tmp_path, "empty.jsonl", [])
    result = run_cli("eval-mc", empty, *judge(tmp_path, [-1, -2]))
    assert result.returncode == 1 and "empty.jsonl: no rows" in result.stderr.decode()


def test_output_file_and_table(tmp_path):
    path = write(tmp_path, "rows.jsonl", [row("A"), row("B")])
    out = tmp_path / "accuracy.json"
    result = run_cli("eval-mc", path, "-o", str(out), *judge(tmp_path, [-1, -2]),
                     env={"COLUMNS": "200"})
    assert result.returncode == 0 and result.stdout == b""
    assert json.loads(out.read_text())["files"][0]["accuracy"] == 0.5
    table = result.stderr.decode()
    assert "Judge accuracy" in table and "rows.jsonl" in table and "50.0%" in table


@pytest.mark.parametrize("flags, problem", [
    (["--reward-model", "rm", "-m", "judge"], "drop -m/--model"),
    (["--reward-model", "rm", "--as-chat"], "drop --as-chat"),
    (["--format", "chat", "--backend", "fake", "-m", "fake"], "use --as-chat"),
    (["--bootstrap", "-1"], "--bootstrap must be 0 or more"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_flags_that_do_not_go_together(tmp_path, flags, problem):
    path = write(tmp_path, "rows.jsonl", [row("A")])
    result = run_cli("eval-mc", path, *flags)
    assert result.returncode == 1 and problem in result.stderr.decode()


def test_dry_run_writes_each_rows_request_instead_of_scoring(tmp_path):
    path = write(tmp_path, "rows.jsonl", [row("B", 3), {"text_correct": "a", "text_incorrect": "b"},
                                          row("A")])
    result = run_cli("eval-mc", path, "--as-chat", "--dry-run", "--batch-size", "1",
                     *judge(tmp_path, [-1, -2, -3]))
    assert result.returncode == 0, result.stderr.decode()
    lines = records(result.stdout)
    assert [line["id"] for line in lines] == [f"{path}:1", f"{path}:3"]
    assert lines[0]["options"] == [" (A)", " (B)", " (C)"]
    assert lines[0]["assistant_prefix"] == CUE and lines[0]["format"] == "chat"
    for flags, problem in ((["--rows", str(tmp_path / "r.jsonl")], "--rows needs scores"),
                           (["--reward-model", "rm"], "--reward-model needs scores")):
        refused = run_cli("eval-mc", path, "--dry-run", *flags)
        assert refused.returncode == 1 and problem in refused.stderr.decode()
    no_template = run_cli("eval-mc", path, "--as-chat", "--dry-run",
                          *judge(tmp_path, [-1, -2, -3], chat_template=False))
    assert no_template.returncode == 1 and "no chat template" in no_template.stderr.decode()


# -- reward-model rows (the model's side is in tests/integration) --------------------------


def test_transcripts_split_into_turns():
    text = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant: bye now"
    assert reward_scoring.transcript_messages(text) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and?"}, {"role": "assistant", "content": "bye now"}]
    assert reward_scoring.transcript_messages("no turns here") is None
    assert reward_scoring.transcript_messages("\n\nHuman: only a question") is None
    assert reward_scoring.transcript_messages("preamble\n\nHuman: a\n\nAssistant: b") is None


class ByLength:
    """Stands in for a reward model in the row maths: a longer transcript scores higher."""

    def scores(self, texts, batch_size=16):
        return [float(len(t)) for t in texts]


def test_reward_model_rows_split_back_into_correct_and_incorrect(tmp_path):
    rows = [{"text_correct": "long answer", "text_incorrect": "short"},
            {"text_correct": ["a", "bbbbbbbb"], "text_incorrect": ["ccc", "dd"]},
            {"text_correct": "same", "text_incorrect": "four"},
            row("A")]
    file = mc.read_file(write(tmp_path, "rows.jsonl", rows))
    result = reward_scoring.score_with_reward_model(ByLength(), file, batch_size=2)
    assert [(s.correct, s.incorrect) for s in result.scored] == [
        ([11.0], [5.0]), ([1.0, 8.0], [3.0, 2.0]), ([4.0], [4.0])]
    assert [s.credit for s in result.scored] == [1.0, 1.0, 0.5]
    assert result.skipped == 1 and result.sizes == [2, 4, 2]


# -- the shipped example -------------------------------------------------------------------


def test_the_example_file_is_in_the_papers_layout():
    rows = records((EXAMPLES / "judge-eval.jsonl").read_text())
    assert 20 <= len(rows) <= 40
    assert all(mc.check_row(r) is None for r in rows)
    answers = [r["corrects"] for r in rows]
    assert answers.count([" (A)"]) == answers.count([" (B)"]) == len(rows) // 2
    sizes = [len(r["corrects"]) + len(r["incorrects"]) for r in rows]
    assert sizes.count(3) >= 4 and set(sizes) == {2, 3}
    with_texts = [r for r in rows if "text_correct" in r]
    assert 3 <= len(with_texts) < len(rows)
    for r in rows:
        prompt = r["prompt"]
        assert prompt.startswith("\n\nConsider the following conversation between a human and "
                                 "an assistant:\n\nHuman: ")
        assert prompt.endswith("]]]\n\nThe answer is:")
        assert "\n\n\n" in prompt and " Options:\n (A) [[[" in prompt
        letters = [o.strip() for o in r["corrects"] + r["incorrects"]]
        assert all(f"\n {letter} [[[" in prompt for letter in letters)
    for r in with_texts:
        for text in (r["text_correct"], r["text_incorrect"]):
            turns = reward_scoring.transcript_messages(text)
            assert turns is not None and turns[-1]["role"] == "assistant"


def test_the_example_file_runs(tmp_path):
    summary = evaluate(str(EXAMPLES / "judge-eval.jsonl"), *judge(tmp_path, [-0.5, -1.5, -2.5]))
    entry = summary["files"][0]
    assert entry["accuracy"] == 0.5 and entry["skipped"] == 0


def test_options_scores_need_one_score_per_option(tmp_path):
    # The default fake script scores two options; a three-option row is its one-line error.
    path = write(tmp_path, "rows.jsonl", [row("A", 3)])
    result = run_cli("eval-mc", path, "--backend", "fake", "-m", "fake")
    assert result.returncode == 1 and "scores 2 options, not 3" in result.stderr.decode()
