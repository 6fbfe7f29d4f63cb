"""Provenance chains: what a model directory records of its data, how eval follows it back to
the labeller, and the judge's accuracy said plainly before it labels."""

from __future__ import annotations

import json

from caitool import lineage
from caitool.stages.evaluate import independence
from caitool.stages.evaluate.systems import System
from helpers import EXAMPLES, run_cli


def trained(path, base, data, **extra):
    path.mkdir(parents=True)
    (path / lineage.SUMMARY).write_text(json.dumps({"base_model": str(base), "data": data, **extra}))
    return path


def answers(model, n=2):
    return {f"p{i}": {"id": f"p{i}", "prompt": f"Q{i}?", "response": "A.",
                      "provenance": {"generate": {"backend": "hf", "model": str(model)}}}
            for i in range(n)}


def test_of_records_keeps_distinct_settings_per_command():
    rows = [{"provenance": {"generate": {"model": "m", "backend": "hf", "seed": 1, "temperature": 1.0},
                            "compare": {"model": "j", "backend": "hf", "principles": ["x"]}}},
            {"provenance": {"generate": {"model": "m", "backend": "hf", "seed": 2}}},
            {"provenance": "not a dict"}, {}]
    assert lineage.of_records(rows) == {"generate": [{"backend": "hf", "model": "m"}],
                                        "compare": [{"backend": "hf", "model": "j"}]}


def test_the_chain_reaches_the_labeller_through_reward_model_and_base(tmp_path):
    base, judge = tmp_path / "base", tmp_path / "judge"
    base.mkdir(), judge.mkdir()
    sft = trained(tmp_path / "sft", base, {"round4.jsonl": {"generate": [{"model": str(base)}],
                                                            "revise": [{"model": str(base)}]}})
    rm = trained(tmp_path / "rm", sft, {"prefs.jsonl": {"generate": [{"model": str(sft)}],
                                                        "compare": [{"model": str(judge)}]},
                                        "human.jsonl": {"import": [{"format": "hh-rlhf"}]}})
    ppo = trained(tmp_path / "ppo", sft, {"prompts.jsonl": {}}, reward_model=str(rm))
    chain = lineage.follow([str(ppo)])
    assert chain.trained[0] == str(ppo) and {str(sft), str(rm)} <= set(chain.trained)
    assert chain.labelled_by == {str(judge), "people (hh-rlhf)"}
    assert str(base) in chain.written_by
    assert chain.unknown == ["prompts.jsonl"]


def test_a_judge_as_the_rl_reward_is_a_labeller(tmp_path):
    rloo = trained(tmp_path / "rloo", tmp_path / "sft", {"p.jsonl": {}}, judge="judge-model")
    assert lineage.follow([str(rloo)]).labelled_by == {"judge-model"}


def test_a_loop_of_links_ends(tmp_path):
    a = trained(tmp_path / "a", tmp_path / "b", {})
    trained(tmp_path / "b", a, {})
    assert sorted(lineage.follow([str(a)]).trained) == [str(a), str(tmp_path / "b")]


def test_eval_marks_the_systems_its_evaluator_labelled_or_wrote(tmp_path):
    base, judge, other = tmp_path / "base", tmp_path / "judge", tmp_path / "other"
    for path in (base, judge, other):
        path.mkdir()
    dpo = trained(tmp_path / "dpo", base, {"prefs.jsonl": {"compare": [{"model": str(judge)}]}})
    systems = [System("base", "b.jsonl", answers(base)), System("dpo", "d.jsonl", answers(dpo))]
    marked = independence.check(systems, str(judge))
    assert not marked["independent"]
    assert marked["systems"]["dpo"]["evaluator_labelled_training_data"]
    assert not marked["systems"]["base"]["evaluator_labelled_training_data"]
    [warning] = independence.warnings(marked)
    assert warning.startswith("dpo: trained on preference labels from the evaluator")
    # The same systems graded by a model that had no hand in them.
    assert independence.check(systems, str(other))["independent"]
    # A model grading its own answers is marked too.
    own = independence.check(systems, str(base))
    assert own["systems"]["base"]["evaluator_wrote_responses"]
    assert own["systems"]["dpo"]["evaluator_wrote_training_data"] is False  # dpo's data: pairs only


def test_judge_at_chance_is_said_and_min_accuracy_stops(tmp_path):
    script = tmp_path / "flat.json"
    script.write_text(json.dumps({"scores": [-1.0] * 9}))  # every option alike: pure ties
    out = tmp_path / "acc.json"
    result = run_cli("eval-mc", str(EXAMPLES / "judge-eval.jsonl"), "--backend", "fake", "-m",
                     str(script), "--min-accuracy", "0.6", "-o", str(out))
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "the judge is at chance on" in stderr and "do not trust them" in stderr
    assert "below --min-accuracy 60%: stopping before its labels are used" in stderr
    assert json.loads(out.read_text())["files"][0]["rows"] > 0  # the summary is kept to read


def test_a_judge_above_chance_passes_quietly(tmp_path):
    rows = [{"prompt": f"Q{i}?\n\nThe answer is:", "corrects": [" (A)"], "incorrects": [" (B)"]}
            for i in range(20)]
    data = tmp_path / "easy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("eval-mc", str(data), "--backend", "fake", "-m", "fake", "--min-accuracy", "0.9")
    assert result.returncode == 0, result.stderr
    assert "at chance" not in result.stderr.decode()
    assert json.loads(result.stdout)["files"][0]["accuracy"] == 1.0


def test_frontier_lines_go_through_snapshots_in_step_order():
    from caitool.stages.evaluate import frontier

    names = ["base", "sl-cai", "rl-cai@10", "rl-cai@2", "rl-cai", "dpo@5", "dpo"]
    assert frontier.lines(names, "sl-cai") == {"rl-cai": ["sl-cai", "rl-cai@2", "rl-cai@10", "rl-cai"],
                                               "dpo": ["sl-cai", "dpo@5", "dpo"]}
    assert frontier.lines(["a", "b"], "a") == {}


def test_eval_writes_the_frontier_and_refuses_an_unknown_start(tmp_path):
    files = []
    for name in ("base", "sl-cai", "rl-cai@1", "rl-cai"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Q{i}?", "response": f"{name} {i}."})
                                + "\n" for i in range(3)))
        files.append(str(path))
    args = ["eval", "--backend", "fake", "-m", "fake", "--bootstrap", "0", *files,
            "--names", "base,sl-cai,rl-cai@1,rl-cai"]
    result = run_cli(*args, "--frontier-from", "sl-cai")
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)["frontier"]["rl-cai"]
    assert [p["system"] for p in line] == ["sl-cai", "rl-cai@1", "rl-cai"]
    assert all(isinstance(p["harmlessness"], float) for p in line)
    wrong = run_cli(*args, "--frontier-from", "nobody")
    assert wrong.returncode == 1 and "--frontier-from 'nobody' is not one of" in wrong.stderr.decode()
