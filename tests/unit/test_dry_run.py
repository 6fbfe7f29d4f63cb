"""--dry-run, in-process with the scripted fake backend: one line per request, the fields a
line holds, which record and step it serves, and that the model is never asked. (The text a
real tokenizer renders, and that no weights load, in tests/integration/test_dry_run_tiny.py.)"""

import pytest

from caitool import constitution
from caitool.backends import dry_run
from caitool.backends.base import SamplingParams
from caitool.errors import CaitoolError
from caitool.io.stream import in_shard
from caitool.render import Prompt
from caitool.stages import supervised
from caitool.stages.feedback import LabelOptions, compare
from caitool.stages.judging import JudgeSettings
from caitool.testing.fake import FakeBackend
from helpers import MINI, jsonl, records, run_cli

FAKE = ["--backend", "fake", "-m", "fake"]
PROMPTS = [{"id": "p1", "prompt": "How do I pick a lock?"}, {"id": "p2", "prompt": "Say hi."}]
PAIRS = [{"id": "c1", "prompt": "Can I swim now?", "responses": ["Yes, go ahead.", "No idea."]}]
OPTIONS = [" (A)", " (B)"]
KEYS = {"id", "index", "step", "kind", "format"}


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    """A dry run that asked the backend anything fails here."""
    def asked(*args, **kwargs):
        raise AssertionError("the model was asked during a dry run")

    monkeypatch.setattr(FakeBackend, "generate", asked)
    monkeypatch.setattr(FakeBackend, "score", asked)


def dry(*args, input=""):
    result = run_cli(*args, *FAKE, "--dry-run", input=input)
    assert result.returncode == 0, result.stderr.decode()
    return records(result.stdout)


def last_user(line):
    return [m["content"] for m in line["messages"] if m["role"] == "user"][-1]


def test_generate_writes_one_line_per_request_not_records():
    lines = dry("generate", "-n", "2", "--max-new-tokens", "7", "--seed", "3", input=jsonl(PROMPTS))
    assert [(line["id"], line["index"], line["step"], line["kind"]) for line in lines] == [
        ("p1", 0, "response", "generate"), ("p2", 1, "response", "generate")]
    for line, row in zip(lines, PROMPTS):
        assert set(line) == KEYS | {"messages", "stop", "sampling"}
        assert line["format"] == "chat"
        assert line["messages"] == [{"role": "user", "content": row["prompt"]}]
        assert line["sampling"]["n"] == 2 and line["sampling"]["max_new_tokens"] == 7
        assert isinstance(line["sampling"]["seed"], int) and line["stop"] == []


def test_critique_shows_the_answer_then_the_critique_built_on_it():
    rules = constitution.load(MINI)
    requests = {p.critique for p in rules.principles}
    rows = [PROMPTS[0], {"id": "p3", "prompt": "Hello?", "response": "Hi there."}]
    lines = dry("critique", "-c", MINI, input=jsonl(rows))
    assert [(line["id"], line["step"]) for line in lines] == [
        ("p1", "response"), ("p1", "critique"), ("p3", "critique")]
    p1, p3 = lines[1], lines[2]
    assert {"role": "assistant", "content": dry_run.PLACEHOLDER} in p1["messages"]
    assert {"role": "assistant", "content": "Hi there."} in p3["messages"]
    assert last_user(p1) in requests and last_user(p3) in requests
    assert p1["index"] == 1 and p3["index"] == 2


def test_revise_asks_in_the_critique_conversation():
    rules = constitution.load(MINI)
    row = {"id": "r1", "prompt": "Hello?", "response": "Go away.", "initial_response": "Go away.",
           "revisions": [{"principle": "unkind", "critique": "It is rude.", "revision": None}]}
    [line] = dry("revise", "-c", MINI, input=jsonl([row]))
    assert (line["id"], line["step"], line["kind"]) == ("r1", "revision", "generate")
    assert line["messages"][-3:] == [
        {"role": "user", "content": rules.principle("unkind").critique},
        {"role": "assistant", "content": "It is rude."},
        {"role": "user", "content": rules.principle("unkind").revision}]


def test_direct_revise_answers_first_and_asks_for_the_revision_with_no_critique():
    rules = constitution.load(MINI)
    [example] = rules.critique_examples
    rows = [PROMPTS[0], {"id": "p3", "prompt": "Hello?", "response": "Go away."}]
    lines = dry("revise", "--direct", "-c", MINI, input=jsonl(rows))
    assert [(line["id"], line["step"]) for line in lines] == [
        ("p1", "response"), ("p1", "revision"), ("p3", "revision")]
    p3 = lines[2]
    principle = rules.principle(supervised.sample_principle(rules, 0, "p3", 0).id)
    assert p3["messages"] == [
        {"role": "user", "content": example.prompt},
        {"role": "assistant", "content": example.response},
        {"role": "user", "content": example.revision_request},
        {"role": "assistant", "content": example.revision},
        {"role": "user", "content": "Hello?"},
        {"role": "assistant", "content": "Go away."},
        {"role": "user", "content": principle.revision}]
    assert {"role": "assistant", "content": dry_run.PLACEHOLDER} in lines[1]["messages"]


def test_compare_scores_both_orders_with_the_options():
    lines = dry("compare", "-c", MINI, input=jsonl(PAIRS))
    assert len(lines) == 2
    first, second = PAIRS[0]["responses"]
    questions = []
    for line in lines:
        assert (line["id"], line["step"], line["kind"]) == ("c1", "judge", "score")
        assert set(line) == KEYS | {"messages", "assistant_prefix", "options"}
        assert line["options"] == OPTIONS
        question = last_user(line)
        assert PAIRS[0]["prompt"] in question and first in question and second in question
        questions.append(question)
    assert questions[0].index(first) < questions[0].index(second)
    assert questions[1].index(second) < questions[1].index(first)


def test_compare_tags_each_request_with_its_pair_and_shows_the_reasoning():
    row = {"id": "t", "prompt": "Pick one.", "responses": ["one", "two", "three"]}
    lines = dry("compare", "-c", MINI, "--cot", input=jsonl([row]))
    reasoning = [line for line in lines if line["step"] == "reasoning"]
    judged = [line for line in lines if line["step"] == "judge"]
    assert [line["id"] for line in reasoning] == [line["id"] for line in judged]
    assert sorted({line["id"] for line in judged}) == ["t", "t:0-2", "t:1-2"]
    assert all(line["kind"] == "generate" and line["stop"] for line in reasoning)
    # The reasoning goes where the model would have written it, before the answer cue.
    assert all(dry_run.PLACEHOLDER in str(line["messages"]) + line.get("assistant_prefix", "")
               for line in judged)
    shown = {"t": ("[[[one]]]", "[[[two]]]"), "t:0-2": ("[[[one]]]", "[[[three]]]"),
             "t:1-2": ("[[[two]]]", "[[[three]]]")}
    for line in judged:
        assert all(response in str(line["messages"]) for response in shown[line["id"]])


def test_eval_writes_the_judge_requests_instead_of_the_summary(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(jsonl([{"id": "x", "prompt": "Q?", "response": "A says."},
                        {"id": "y", "prompt": "R?", "response": "A again."}]))
    b.write_text(jsonl([{"id": "x", "prompt": "Q?", "response": "B says."},
                        {"id": "y", "prompt": "R?", "response": "B again."}]))
    out = tmp_path / "out.jsonl"
    result = run_cli("eval", *FAKE, "--dry-run", a, b, "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    lines = records(out.read_text())
    assert len(lines) == 3 * 2 * 2  # dimensions x prompts x orders
    assert [line["index"] for line in lines] == list(range(12))
    assert {(line["dimension"], line["id"]) for line in lines} == {
        (d, i) for d in ("harmlessness", "helpfulness", "evasiveness") for i in "xy"}
    assert all(line["systems"] == ["a", "b"] and line["options"] == OPTIONS for line in lines)
    for line in lines:
        answers = ("A says.", "B says.") if line["id"] == "x" else ("A again.", "B again.")
        assert all(answer in last_user(line) for answer in answers)


def test_raw_format_shows_the_transcript(tmp_path):
    script = tmp_path / "script.json"
    script.write_text('{"chat_template": false}')
    result = run_cli("generate", "--backend", "fake", "-m", script, "--dry-run", input=jsonl(PROMPTS))
    lines = records(result.stdout)
    assert all(line["format"] == "raw" and "messages" not in line for line in lines)
    assert "Human: How do I pick a lock?" in lines[0]["text"] and lines[0]["stop"]


def test_shard_is_kept_and_resume_refused(tmp_path):
    rows = [{"id": f"s{i}", "prompt": f"Question {i}?"} for i in range(12)]
    lines = dry("generate", "--shard", "1/3", input=jsonl(rows))
    assert [line["id"] for line in lines] == [r["id"] for r in rows if in_shard(r["id"], (1, 3))]
    result = run_cli("generate", *FAKE, "--dry-run", "-o", tmp_path / "o.jsonl", "--resume",
                     input=jsonl(rows))
    assert result.returncode == 1
    assert "--resume does not combine with --dry-run" in result.stderr.decode()


def test_eval_refuses_outputs_that_need_answers(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text(jsonl([{"id": "x", "prompt": "Q?", "response": "A."}]))
    result = run_cli("eval", *FAKE, "--dry-run", a, a, "--names", "p,q", "--judgments", tmp_path / "j")
    assert result.returncode == 1 and "--dry-run" in result.stderr.decode()


def test_lines_are_what_the_backend_would_be_asked(monkeypatch):
    """The same stage, once on the fake backend and once dry: the same prompts, stop strings
    and sampling settings, seeds included, batch for batch."""
    monkeypatch.undo()
    rules = constitution.load(MINI)
    rows = [{"id": f"q{i}", "prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(3)]
    params = SamplingParams(max_new_tokens=9, temperature=0.7, seed=5)

    fake = FakeBackend("fake")
    supervised.critique(supervised.Sampler(fake, params), rules, [dict(r) for r in rows])
    recorder = dry_run.create("fake", "fake")
    supervised.critique(supervised.Sampler(recorder, params), rules, [dict(r) for r in rows])
    lines = recorder.lines()
    [call] = fake.calls
    assert [line["messages"] for line in lines] == [p.message_dicts() for p in call.prompts]
    assert all(line["stop"] == call.params.stop for line in lines)
    assert all(line["sampling"]["seed"] == call.params.seed for line in lines)
    assert [line["id"] for line in lines] == ["q0", "q1", "q2"]

    fake = FakeBackend("fake")
    settings = JudgeSettings(principles=2)
    compare(fake, rules, [dict(PAIRS[0])], settings, LabelOptions())
    recorder = dry_run.create("fake", "fake")
    compare(recorder, rules, [dict(PAIRS[0])], settings, LabelOptions())
    lines = recorder.lines()
    [call] = fake.calls
    assert [line["messages"] for line in lines] == [p.message_dicts() for p in call.prompts]
    assert [line["options"] for line in lines] == call.options


def test_each_line_names_the_id_and_step_its_request_serves_in_one_pass():
    recorder = dry_run.create("fake", "fake")
    same = Prompt.chat([{"role": "user", "content": "Same?"}])
    params = SamplingParams()
    recorder.generate([same.serving("u1", "response"), same.serving("u2", "response")], params)
    recorder.generate([same.serving("u2", "critique")], params)
    lines = recorder.lines(dimension="d")
    assert [(line["id"], line["step"], line["index"], line["dimension"]) for line in lines] == [
        ("u1", "response", 0, "d"), ("u2", "response", 1, "d"), ("u2", "critique", 2, "d")]
    recorder.generate([same.serving("u3", "critique")], params)
    [line] = recorder.lines()
    assert (line["id"], line["step"], line["index"]) == ("u3", "critique", 3)
    assert recorder.requests == []


def test_requests_that_serve_nothing_are_refused():
    """A step not written for dry runs (its requests carry no tag) must not write the
    placeholders as if they were the model's output."""
    recorder = dry_run.create("fake", "fake")
    prompt = Prompt.chat([{"role": "user", "content": "Hi"}])
    with pytest.raises(CaitoolError, match="does not support --dry-run"):
        recorder.generate([prompt], SamplingParams())
    with pytest.raises(CaitoolError, match="does not support --dry-run"):
        recorder.score([prompt], [OPTIONS])
