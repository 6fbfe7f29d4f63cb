"""The paper's roles kept apart, with tiny models built on the spot: a model directory records
who wrote and labelled its data, and eval marks a system graded by the judge that labelled
its training data (and not one graded by a model that had no hand in it)."""

from __future__ import annotations

import json
import shutil

from helpers import EXAMPLES, caitool, records, shell

SMALL = ["--max-new-tokens", "8", "--batch-size", "8"]


def test_the_chain_is_recorded_and_eval_marks_its_own_labels(tiny_model, tmp_path):
    answerer, judge, evaluator = (tmp_path / name for name in ("answerer", "judge", "evaluator"))
    for path in (answerer, judge, evaluator):
        shutil.copytree(tiny_model, path)  # the same weights; the roles are told by path
    prompts = EXAMPLES / "smoke.jsonl"
    prefs, dpo = tmp_path / "prefs.jsonl", tmp_path / "dpo"
    made = shell(f"caitool generate -m {answerer} -n 2 {' '.join(SMALL)} {prompts} "
                 f"| caitool compare -m {judge} --batch-size 8 > {prefs}")
    assert made.returncode == 0, made.stderr.decode()
    caitool("train-dpo", prefs, "-m", answerer, "-o", dpo, "--max-steps", "2")
    summary = json.loads((dpo / "caitool_training.json").read_text())
    assert summary["base_model"] == str(answerer)
    [data] = summary["data"].values()
    assert [entry["model"] for entry in data["compare"]] == [str(judge)]
    assert data["generate"][0]["model"] == str(answerer)

    base, tuned = tmp_path / "base.jsonl", tmp_path / "dpo.jsonl"
    caitool("generate", "-m", answerer, *SMALL, prompts, "-o", base)
    caitool("generate", "-m", dpo, *SMALL, prompts, "-o", tuned)

    graded = caitool("eval", "-m", judge, "--bootstrap", "0", base, tuned, "--only", "harmlessness")
    marks = json.loads(graded.stdout)["independence"]
    assert marks["independent"] is False
    assert marks["systems"]["dpo"]["evaluator_labelled_training_data"] is True
    assert marks["systems"]["dpo"]["labelled_by"] == [str(judge)]
    assert marks["systems"]["base"]["evaluator_labelled_training_data"] is False
    assert b"dpo: trained on preference labels from the evaluator" in graded.stderr

    apart = caitool("eval", "-m", evaluator, "--bootstrap", "0", base, tuned, "--only", "harmlessness")
    assert json.loads(apart.stdout)["independence"]["independent"] is True
    assert b"from the evaluator" not in apart.stderr and b"by the evaluator" not in apart.stderr
    assert records(tuned.read_text())[0]["provenance"]["generate"]["model"] == str(dpo)


def test_snapshots_are_models_that_lead_back_to_their_run(tiny_model, tmp_path):
    rows = tmp_path / "sft.jsonl"
    rows.write_text("".join(json.dumps({"id": f"s{i}", "prompt": f"Say {i}.", "response": f"{i}.",
                                        "provenance": {"revise": {"model": "writer"}}}) + "\n"
                            for i in range(8)))
    out = tmp_path / "sft"
    caitool("train-sft", rows, "-m", tiny_model, "-o", out, "--max-steps", "4", "--snapshots", "2",
            "--batch-size", "2")
    snapshots = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snapshots == ["step-000002", "step-000004"]
    early = out / "snapshots" / snapshots[0]
    answered = records(caitool("generate", "-m", early, *SMALL, EXAMPLES / "smoke.jsonl").stdout)
    assert len(answered) == 8
    from caitool import lineage

    chain = lineage.follow([str(early)])
    assert str(out) in chain.trained and "writer" in chain.written_by
