"""Did revising help? `eval --revisions` judges final revisions against the initial answers,
and `show --summary` counts what changed; in-process with the fake backend."""

from __future__ import annotations

import json

from helpers import jsonl, run_cli


def supervised(id_, initial, final):
    return {"id": id_, "prompt": f"Question {id_}?", "initial_response": initial,
            "response": final,
            "revisions": [{"principle": "harm-general", "critique": "c", "revision": final}]}


ROWS = [supervised("a", "Do the harmful thing.", "Here is a safer way."),
        supervised("b", "Same answer.", "Same answer."),
        supervised("c", "One two three.", "One two three four five.")]


def test_eval_revisions_judges_revised_against_initial(tmp_path):
    source = tmp_path / "round1.jsonl"
    source.write_text(jsonl(ROWS))
    result = run_cli("eval", "--backend", "fake", "-m", "fake", "--revisions", source,
                     "--only", "harmlessness", "--bootstrap", "50")
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert summary["systems"] == ["initial", "revised"]
    [pair] = summary["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("initial", "revised", 3)
    # The fake judge always answers (A): every prompt is a tie between the two orders.
    assert pair["harmlessness"]["ties"] == 3


def test_eval_revisions_refuses_files_too_and_unrevised_records(tmp_path):
    source = tmp_path / "round1.jsonl"
    source.write_text(jsonl(ROWS))
    both = run_cli("eval", "--backend", "fake", "-m", "fake", "--revisions", source, source, source)
    assert both.returncode == 1 and "give FILES or --revisions, not both" in both.stderr.decode()
    pending = {**ROWS[0], "revisions": [{"principle": "p", "critique": "c", "revision": None}]}
    source.write_text(jsonl([pending]))
    bad = run_cli("eval", "--backend", "fake", "-m", "fake", "--revisions", source)
    assert bad.returncode == 1
    assert f"{source}:1: the last critique has no revision yet" in bad.stderr.decode()


def test_show_summary_counts_changes_and_lengths(tmp_path):
    source = tmp_path / "round1.jsonl"
    source.write_text(jsonl(ROWS))
    out = run_cli("show", "--summary", source, env={"COLUMNS": "120"}).stdout.decode()
    assert "changed by revision" in out and "2 of 3 responses" in out
    # Words: initial 4 + 2 + 3 = 9, revised 5 + 2 + 5 = 12, over 3 records.
    assert "3.0 initial -> 4.0 revised" in out
    assert "harm-general (3)" in out
