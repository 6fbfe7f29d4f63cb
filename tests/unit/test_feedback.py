"""AI feedback's plumbing in-process with the scripted fake backend: label maths (orders,
inversion, hard labels, ties), pairing, bad input and flags, resume, and `caitool prefs`.
(The same commands run end to end on real tiny models in tests/integration/test_compare.py.)"""

from __future__ import annotations

import math

import pytest

from helpers import jsonl, records, run_cli

FAKE = ["--backend", "fake", "-m", "fake"]
PAIRS = [
    {"id": "egg", "prompt": "How do I boil an egg?",
     "responses": ["Boil it for eight minutes.", "I cannot help with that."]},
    {"id": "bike", "prompt": "What's the easiest way to steal a bike?",
     "responses": ["I won't help with theft.", "Cut the lock at night."]},
]


@pytest.fixture
def one_principle(tmp_path):
    """Constitutions with a single principle, so the direction of the label is known."""
    for direction in ("better", "worse"):
        (tmp_path / f"{direction}.yaml").write_text(
            f"name: {direction}-only\ncomparison:\n  - id: {direction}\n"
            f"    question: Which response is {direction}?\n    direction: {direction}\n")
    return tmp_path


def judge_a(tmp_path, scores=(-0.1, -2.3)):
    """A judge that always prefers the option shown as (A), by log-probabilities."""
    script = tmp_path / "always-a.json"
    script.write_text(f'{{"scores": [{scores[0]}, {scores[1]}]}}')
    return ["--backend", "fake", "-m", str(script)]


def test_labels_from_one_order_and_from_both(tmp_path, one_principle):
    judge = judge_a(tmp_path)
    p_a = 1 / (1 + math.exp(-2.2))
    one = records(run_cli("compare", *judge, "-c", one_principle / "better.yaml", "--one-order",
                          input=jsonl(PAIRS)).stdout)
    assert [r["p_chosen"] for r in one] == pytest.approx([p_a, p_a])
    assert [r["chosen"] for r in one] == [PAIRS[0]["responses"][0], PAIRS[1]["responses"][0]]
    # Both orders: the judge prefers a position, not a response, so every pair is a tie.
    both = records(run_cli("compare", *judge, "-c", one_principle / "better.yaml",
                           input=jsonl(PAIRS)).stdout)
    assert [r["p_chosen"] for r in both] == pytest.approx([0.5, 0.5])
    assert all(r["tie"] and r["orders_agree"] is False for r in both)
    assert [d["p_first"] for d in both[0]["judgments"]] == pytest.approx([p_a, 1 - p_a])


def test_a_worse_principle_inverts_and_hard_labels(tmp_path, one_principle):
    judge = judge_a(tmp_path)
    rows = records(run_cli("compare", *judge, "-c", one_principle / "worse.yaml", "--one-order",
                           "--hard", input=jsonl(PAIRS)).stdout)
    # (A) is picked as the worse one: the second response is chosen, with a hard label.
    assert [r["chosen"] for r in rows] == [PAIRS[0]["responses"][1], PAIRS[1]["responses"][1]]
    assert [r["p_chosen"] for r in rows] == [1.0, 1.0]


def test_clamping_and_dropping_ties(tmp_path, one_principle):
    judge = judge_a(tmp_path)
    clamped = records(run_cli("compare", *judge, "-c", one_principle / "better.yaml", "--one-order",
                              "--clamp", "0.4,0.6", input=jsonl(PAIRS)).stdout)
    assert [r["p_chosen"] for r in clamped] == pytest.approx([0.6, 0.6])
    dropped = run_cli("compare", *judge, "-c", one_principle / "better.yaml", "--drop-ties",
                      input=jsonl(PAIRS))
    assert dropped.returncode == 0 and records(dropped.stdout) == []


def test_unknown_fields_pass_through_and_messages_become_the_prompt():
    chat = {"id": "c1", "messages": [{"role": "user", "content": "Name a colour."}],
            "responses": ["Red.", "Blue."], "source": "test"}
    [row] = records(run_cli("compare", *FAKE, input=jsonl([chat])).stdout)
    assert row["source"] == "test" and "messages" not in row and "responses" not in row
    assert row["prompt"] == chat["messages"]
    assert row["provenance"]["compare"]["backend"] == "fake"


def test_pairing():
    from caitool.stages.feedback import pair_id, pair_indices

    assert pair_indices(2, "all") == [(0, 1)]
    assert pair_indices(4, "all") == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (0, 1)]
    assert pair_indices(4, "first") == [(0, 1)]
    assert [pair_id("r", *p) for p in pair_indices(3, "all")] == ["r:0-2", "r:1-2", "r"]

def test_bad_input_names_file_and_line_after_writing_earlier_records(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(jsonl([*PAIRS, {"id": "one", "prompt": "Hi", "responses": ["Hello."]}]))
    result = run_cli("compare", *FAKE, "--batch-size", "2", data)
    assert result.returncode != 0
    assert (f"caitool compare: {data}:3: 'responses' has 1 response; compare needs at least two"
            in result.stderr.decode())
    assert "Traceback" not in result.stderr.decode()
    assert [r["id"] for r in records(result.stdout)] == ["egg", "bike"]

def test_bad_input_and_flags_fail_before_loading_a_model():
    missing = run_cli("compare", *FAKE, input=jsonl([{"prompt": "Hi", "response": "x"}]))
    assert missing.returncode != 0
    assert "caitool compare: <stdin>:1: missing 'responses' (one 'response' is not enough)" in (
        missing.stderr.decode())
    for flags, message in ((["--clamp", "0.7,0.9"], "0 <= LO <= 0.5 <= HI <= 1"),
                           (["--principles", "99"], "has 17 comparison principles"),
                           (["--pairs", "some"], "--pairs must be all or first")):
        result = run_cli("compare", *FAKE, *flags, input=jsonl(PAIRS))
        assert result.returncode != 0 and result.stdout == b""
        assert message in result.stderr.decode()

def test_resume_redoes_no_pair(tmp_path):
    three = {"id": "t", "prompt": "Say hi.", "responses": ["Hi.", "Hello.", "Hey."]}
    out = tmp_path / "prefs.jsonl"
    # A run that died after writing 'egg' and one pair of the three-response record.
    out.write_text(jsonl([{"id": "egg", "note": "old"}, {"id": "t:0-2", "note": "old"}]))
    assert run_cli("compare", *FAKE, "-o", out, "--resume", input=jsonl([*PAIRS, three])).returncode == 0
    rows = records(out.read_text())
    assert [r["id"] for r in rows] == ["egg", "t:0-2", "bike", "t:1-2", "t"]
    assert [r.get("note") for r in rows[:2]] == ["old", "old"]


def test_a_failed_pair_is_named_and_holds_its_record_back():
    """A pair whose scoring fails for good is left out and its record named; the record's
    (0, 1) pair, which carries its id, is held back too, so --resume redoes the record."""
    from caitool import constitution as constitutions
    from caitool.backends.base import RequestsFailed
    from caitool.stages.feedback import LabelOptions, compare
    from caitool.stages.judging import JudgeSettings
    from caitool.testing.fake import FakeBackend

    class Flaky(FakeBackend):
        def score(self, prompts, options):
            scores = super().score(prompts, options)
            failures = {i: "HTTP 500: down" for i, p in enumerate(prompts)
                        if "FAIL" in "".join(content for _, content in p.messages or ())}
            if failures:
                raise RequestsFailed(failures, [None if i in failures else s
                                                for i, s in enumerate(scores)])
            return scores

    rules = constitutions.load("harmless")
    batch = [dict(PAIRS[0]),
             {"id": "two", "prompt": "Hi", "responses": ["Hello.", "FAIL"]},
             {"id": "four", "prompt": "Hi", "responses": ["a", "b", "FAIL", "d"]}]
    result = compare(Flaky("fake"), rules, batch, JudgeSettings(), LabelOptions())
    assert result.failed == {"two": "HTTP 500: down", "four": "pair 0-2: HTTP 500: down"}
    assert [r["id"] for r in result.records] == ["egg", "four:0-3", "four:1-3"]
    # Resumed with those written, only the missing pairs are judged, the record's id last.
    backend = FakeBackend("fake")
    again = compare(backend, rules, batch[2:], JudgeSettings(), LabelOptions(),
                    skip_ids={"four:0-3", "four:1-3"})
    assert [r["id"] for r in again.records] == ["four:0-2", "four:1-2", "four:2-3", "four"]
    assert len(backend.calls[0].prompts) == 4 * 2 and again.failed == {}


def test_cot_reasoning_that_fails_names_the_record(tmp_path):
    script = tmp_path / "judge.json"
    script.write_text('{"fail_on": "FAIL"}')
    rows = [PAIRS[0], {"id": "bad", "prompt": "Hi", "responses": ["Hello.", "FAIL"]}, PAIRS[1]]
    result = run_cli("compare", "--backend", "fake", "-m", script, "--cot", input=jsonl(rows))
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert "record bad failed: scripted failure" in stderr
    assert [r["id"] for r in records(result.stdout)] == ["egg", "bike"]


def test_scores_that_are_not_numbers_never_reach_a_label(tmp_path):
    for scores in ("[NaN, -1.0]", "[Infinity, Infinity]"):
        script = tmp_path / "judge.json"
        script.write_text(f'{{"scores": {scores}}}')
        result = run_cli("compare", "--backend", "fake", "-m", script, input=jsonl(PAIRS))
        stderr = result.stderr.decode()
        assert result.returncode == 1 and result.stdout == b""
        assert "record egg failed: the judge's option scores are not log-probabilities" in stderr
        assert "2 records failed" in stderr



# -- caitool prefs ---------------------------------------------------------------------------


def supervised(id_, initial, *revisions, **extra):
    return {"id": id_, "prompt": "How can I get back at my noisy neighbour?",
            "initial_response": initial, "response": revisions[-1] if revisions else initial,
            "revisions": [{"principle": "harm-general", "critique": "c", "revision": r}
                          for r in revisions], **extra}


def test_prefs_prefers_the_final_revision():
    rows = records(run_cli("prefs", input=jsonl([
        supervised("a", "Slash their tyres.", "Talk to them.", "Talk to them calmly first."),
        {**supervised("b", "Yell at them.", "Write them a note."), "prompt": None,
         "messages": [{"role": "user", "content": "Noisy neighbour?"}]},
    ])).stdout)
    assert rows[0]["chosen"] == "Talk to them calmly first."
    assert rows[0]["rejected"] == "Slash their tyres."
    assert rows[0]["p_chosen"] == 1.0 and rows[0]["provenance"]["prefs"]["rounds"] == 2
    assert rows[1]["prompt"] == [{"role": "user", "content": "Noisy neighbour?"}]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "Write them a note."}]
    assert "messages" not in rows[1]


def test_prefs_bad_and_identical_records():
    no_revision = supervised("n", "Slash their tyres.")
    pending = supervised("p", "x", "y")
    pending["revisions"].append({"principle": "harm-general", "critique": "c", "revision": None})
    result = run_cli("prefs", input=jsonl([supervised("ok", "a", "b"), no_revision]))
    assert result.returncode != 0
    assert "caitool prefs: <stdin>:2: no revision to prefer" in result.stderr.decode()
    assert [r["id"] for r in records(result.stdout)] == ["ok"]
    skipped = run_cli("prefs", "--skip-invalid",
                      input=jsonl([no_revision, pending, supervised("same", "a", "a"),
                                   supervised("ok", "a", "b")]))
    assert [r["id"] for r in records(skipped.stdout)] == ["ok"]
    stderr = skipped.stderr.decode()
    assert "<stdin>:2: the last critique has no revision yet" in stderr
    assert "1 record(s) left out: revision identical to the initial response" in stderr
