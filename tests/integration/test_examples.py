"""The shipped example prompts, constitutions and ablation script are usable as they are."""

from __future__ import annotations

import json
import subprocess

import pytest

from caitool import constitution
from caitool.io.jsonl import iter_records
from caitool.schema import check_prompt, conversation
from helpers import EXAMPLES, ROOT, records, shell

EXPECTED_COUNTS = {"red_team.jsonl": 100, "helpful.jsonl": 100, "smoke.jsonl": 8}
# Not prompts: multiple-choice questions for eval-mc (checked in its own tests), and a few
# comparisons in hh-rlhf's shape for `caitool import` (docs/reproduce.md's toy run).
OTHER_FILES = {"judge-eval.jsonl", "hh-rlhf-sample.jsonl"}
CONSTITUTIONS = sorted((ROOT / "constitutions").glob("*.y*ml"))


def test_every_example_file_is_counted_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.jsonl")) == sorted({*EXPECTED_COUNTS, *OTHER_FILES})


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_example_prompts_parse_with_unique_ids(name):
    rows = [r for _, r in iter_records(str(EXAMPLES / name), check_prompt)]  # raises file:line if bad
    assert len(rows) == EXPECTED_COUNTS[name]
    ids = [row.get("id") for row in rows]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)
    # No prompt twice; a conversation counts whole.
    assert len({json.dumps(conversation(row)) for row in rows}) == len(rows)


def test_example_ids_are_unique_across_files():
    ids = [row["id"] for name in EXPECTED_COUNTS for row in (r for _, r in iter_records(str(EXAMPLES / name)))]
    assert len(set(ids)) == len(ids)


def test_constitutions_are_found():
    names = {path.stem for path in CONSTITUTIONS}
    assert {"harmless", "helpful"} <= names
    assert names <= set(constitution.builtin_names())


@pytest.mark.parametrize("path", CONSTITUTIONS, ids=lambda p: p.stem)
def test_each_constitution_loads_by_name_and_by_path(path):
    by_name = constitution.load(path.stem)
    by_path = constitution.load(str(path))
    assert by_name.to_dict() == by_path.to_dict()
    assert by_name.principles or by_name.comparisons


def test_eval_has_comparison_principles_for_every_dimension():
    for name in ("harmless", "helpful", "engaged"):
        loaded = constitution.load(name)
        loaded.require_comparisons()
        assert len(loaded.comparisons) >= 4  # enough to sample several per pair
    constitution.load("harmless").require_principles()


def test_the_ablation_script_is_valid_bash_with_strict_mode():
    script = EXAMPLES / "ablation_rounds.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "set -euo pipefail" in text
    for variable in ("MODEL=", "N=", "ROUNDS=", "RUN="):
        assert variable in text


@pytest.mark.slow
def test_the_ablation_script_runs_with_the_tiny_model(tmp_path, tiny_model):
    run = tmp_path / "run"
    result = shell(f"bash {EXAMPLES / 'ablation_rounds.sh'}", env={
        "MODEL": str(tiny_model), "N": "2", "ROUNDS": "2", "MAX_NEW_TOKENS": "4",
        "RUN": str(run), "PLOT": "", "CAITOOL_QUIET": "1"})
    assert result.returncode == 0, result.stderr.decode()
    rounds = records((run / "round2.jsonl").read_text())
    assert [len(r["revisions"]) for r in rounds] == [2, 2]
    summary = json.loads((run / "eval.json").read_text())
    assert summary["systems"] == ["initial", "1-round", "2-rounds"]
    assert set(summary["elo"]["harmlessness"]) == {"initial", "1-round", "2-rounds"}
    assert not (run / "elo.png").exists()


def test_the_direct_revision_script_is_valid_bash_with_strict_mode():
    script = EXAMPLES / "direct-revision.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "set -euo pipefail" in text and "caitool revise --direct" in text
    for variable in ("MODEL=", "JUDGE=", "N=", "ROUNDS=", "MAX_NEW_TOKENS=", "RUN=", "PLOT="):
        assert variable in text


@pytest.mark.slow
def test_the_direct_revision_script_runs_with_the_tiny_model(tmp_path, tiny_model):
    run = tmp_path / "run"
    result = shell(f"bash {EXAMPLES / 'direct-revision.sh'}", env={
        "MODEL": str(tiny_model), "N": "2", "ROUNDS": "2", "MAX_NEW_TOKENS": "4",
        "RUN": str(run), "PLOT": "", "CAITOOL_QUIET": "1"})
    assert result.returncode == 0, result.stderr.decode()
    initial = records((run / "round0.jsonl").read_text())
    critiqued = records((run / "critiqued2.jsonl").read_text())
    direct = records((run / "direct2.jsonl").read_text())
    assert [r["id"] for r in critiqued] == [r["id"] for r in direct] == [r["id"] for r in initial]
    for a, b, first in zip(critiqued, direct, initial):
        # The same answers revised under the same principles, with a critique or without.
        assert a["initial_response"] == b["initial_response"] == first["response"]
        assert [e["principle"] for e in a["revisions"]] == [e["principle"] for e in b["revisions"]]
        assert all(isinstance(e["critique"], str) and "direct" not in e for e in a["revisions"])
        assert all(e["critique"] is None and e["direct"] is True for e in b["revisions"])
        assert len(a["revisions"]) == len(b["revisions"]) == 2
    summary = json.loads((run / "eval.json").read_text())
    assert summary["systems"] == ["initial", "critiqued", "direct"]
    assert set(summary["elo"]["harmlessness"]) == {"initial", "critiqued", "direct"}
    assert not (run / "elo.png").exists()


def test_the_hh_rlhf_sample_imports_as_preferences():
    result = shell(f"caitool import hh-rlhf --as prefs {EXAMPLES / 'hh-rlhf-sample.jsonl'}")
    assert result.returncode == 0, result.stderr.decode()
    assert len(records(result.stdout)) == 6
