"""The supervised stage's plumbing, in-process with the scripted fake backend: what passes
through, what is asked for, ids, principle sampling and input errors. (The same steps run
end to end on a real tiny model in tests/integration/test_supervised.py.)"""

from caitool import constitution
from caitool.backends.base import SamplingParams
from caitool.stages import supervised
from caitool.testing.fake import FakeBackend
from helpers import MINI, jsonl, records, run_cli

FAKE = ["--backend", "fake", "-m", "fake"]


def test_unknown_fields_pass_through():
    row = {"id": "x1", "prompt": "Say hello.", "category": "greeting",
           "meta": {"source": "handmade", "tags": [1, 2]}, "score": 0.5}
    critiqued = run_cli("critique", *FAKE, "-c", MINI, input=jsonl([row]))
    [record] = records(run_cli("revise", *FAKE, "-c", MINI, input=critiqued.stdout).stdout)
    for key in ("id", "prompt", "category", "meta", "score"):
        assert record[key] == row[key]
    assert record["response"] == record["revisions"][0]["revision"]


def test_existing_response_is_critiqued_not_regenerated():
    row = {"id": "r1", "prompt": "Hi", "response": "A fixed first answer."}
    [record] = records(run_cli("critique", *FAKE, "-c", MINI, input=jsonl([row])).stdout)
    assert record["initial_response"] == "A fixed first answer."
    assert record["response"] == "A fixed first answer."
    assert "generate" not in record.get("provenance", {})


def test_principles_are_sampled_independently_per_record():
    rows = [{"id": f"p{i}", "prompt": "Tell me something."} for i in range(24)]
    out = records(run_cli("critique", *FAKE, "-c", "harmless", "--batch-size", "24",
                          input=jsonl(rows)).stdout)
    assert len({r["revisions"][0]["principle"] for r in out}) > 3


def test_stable_ids_for_records_without_one():
    rows = [{"prompt": "First question?"}, {"prompt": "Second question?"}]
    a = records(run_cli("generate", *FAKE, input=jsonl(rows)).stdout)
    b = records(run_cli("generate", *FAKE, "--seed", "3", input=jsonl(rows[::-1])).stdout)
    assert {r["id"] for r in a} == {r["id"] for r in b}
    assert a[0]["id"] != a[1]["id"]


def test_revise_needs_a_pending_critique():
    row = {"id": "z", "prompt": "Hi", "response": "Hello"}
    result = run_cli("revise", *FAKE, "-c", MINI, input=jsonl([row]))
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "caitool revise: <stdin>:1: no critique waiting for a revision; run 'caitool critique' first")
    pending = run_cli("critique", *FAKE, "-c", MINI, input=jsonl([row])).stdout
    again = run_cli("critique", *FAKE, "-c", MINI, input=pending)
    assert again.returncode == 1 and "run 'caitool revise' first" in again.stderr.decode()


def test_revision_is_asked_in_the_critique_conversation():
    rules = constitution.load(MINI)
    backend = FakeBackend("fake")
    sampler = supervised.Sampler(backend, SamplingParams(max_new_tokens=8))
    records_ = [{"id": "q", "prompt": "How do I pick a lock?", "response": "Like this."}]
    supervised.critique(sampler, rules, records_)
    supervised.revise(sampler, rules, records_)
    critique_call, revise_call = backend.calls
    asked = revise_call.prompts[0].message_dicts()
    principle = rules.principle(records_[0]["revisions"][0]["principle"])
    # The revision request follows the critique request and the critique, after the same
    # conversation the critique was asked in.
    assert asked[-3:] == [
        {"role": "user", "content": principle.critique},
        {"role": "assistant", "content": records_[0]["revisions"][0]["critique"]},
        {"role": "user", "content": principle.revision},
    ]
    assert critique_call.prompts[0].message_dicts() == asked[:-2]


def test_direct_revision_samples_the_principles_critique_samples():
    """With the same seed, a direct run and a critiqued one revise each record under the same
    principle, round by round, and differ only in the critique."""
    rows = [{"id": f"d{i}", "prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(8)]
    critiqued = records(run_cli("critique", *FAKE, "-c", "harmless", "--seed", "4",
                                input=jsonl(rows)).stdout)
    direct = records(run_cli("revise", "--direct", *FAKE, "-c", "harmless", "--seed", "4",
                             input=jsonl(rows)).stdout)
    assert [r["revisions"][0]["principle"] for r in direct] == [
        r["revisions"][0]["principle"] for r in critiqued]
    for record, row in zip(direct, rows):
        [entry] = record["revisions"]
        assert entry == {"principle": entry["principle"], "critique": None,
                         "revision": record["response"], "direct": True}
        assert record["initial_response"] == row["response"]
        assert record["provenance"]["revise"]["direct"] is True
    # A second round, critiqued or direct, follows a direct one.
    again = records(run_cli("critique", *FAKE, "-c", "harmless", "--seed", "4",
                            input=jsonl(direct)).stdout)
    revised = records(run_cli("revise", *FAKE, "-c", "harmless", input=jsonl(again)).stdout)
    assert [len(r["revisions"]) for r in revised] == [2] * len(rows)
    assert all(r["revisions"][1]["critique"] and "direct" not in r["revisions"][1] for r in revised)
    twice = records(run_cli("revise", "--direct", *FAKE, "-c", "harmless", "--seed", "4",
                            input=jsonl(direct)).stdout)
    assert [r["revisions"][1]["principle"] for r in twice] == [
        r["revisions"][1]["principle"] for r in again]


def test_rounds_in_one_process_write_what_the_pipe_writes(tmp_path):
    rows = [{"id": f"n{i}", "prompt": f"Question {i}?"} for i in range(5)] + [
        {"id": "bad", "prompt": "Please FAIL here."}]
    script = tmp_path / "script.json"
    # No running count in the replies: it would differ between one process and four.
    script.write_text('{"fail_on": "FAIL", "reply": "A reply to: {last}"}')
    fake = ["--backend", "fake", "-m", str(script), "-c", "harmless", "--seed", "2",
            "--batch-size", "4"]
    piped = jsonl(rows)
    for command in ("critique", "revise", "critique", "revise"):
        piped = run_cli(command, *fake, input=piped).stdout
    once = run_cli("revise", "--rounds", "2", *fake, input=jsonl(rows))
    assert once.returncode == 1 and "record bad failed: scripted failure" in once.stderr.decode()
    assert records(once.stdout) == records(piped)
    assert [len(r["revisions"]) for r in records(once.stdout)] == [2] * 5
    direct = jsonl(rows[:5])
    for _ in range(3):
        direct = run_cli("revise", "--direct", *fake, input=direct).stdout
    assert records(run_cli("revise", "--direct", "--rounds", "3", *fake,
                           input=jsonl(rows[:5])).stdout) == records(direct)
    pending = run_cli("critique", *fake, input=jsonl(rows[:1])).stdout
    refused = run_cli("revise", "--rounds", "1", *fake, input=pending)
    assert refused.returncode == 1 and "run 'caitool revise' first" in refused.stderr.decode()


def test_direct_revision_refuses_a_pending_critique():
    row = {"id": "z", "prompt": "Hi", "response": "Hello"}
    pending = run_cli("critique", *FAKE, "-c", MINI, input=jsonl([row])).stdout
    result = run_cli("revise", "--direct", *FAKE, "-c", MINI, input=pending)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "caitool revise: <stdin>:1: the last round's critique has no revision yet; "
        "run 'caitool revise' first")


def test_a_failed_request_leaves_its_record_out_and_names_it(tmp_path):
    rows = [{"id": "ok", "prompt": "Fine."}, {"id": "bad", "prompt": "Please FAIL here."}]
    out = tmp_path / "out.jsonl"
    script = tmp_path / "script.json"
    script.write_text('{"fail_on": "FAIL"}')
    result = run_cli("generate", "--backend", "fake", "-m", script, "-o", out, input=jsonl(rows))
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "record bad failed: scripted failure" in stderr
    assert [r["id"] for r in records(out.read_bytes())] == ["ok"]


def test_backends_are_closed_after_the_command():
    backend = FakeBackend("fake")
    with backend:
        pass
    assert backend.closed
