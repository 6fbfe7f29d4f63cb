"""`make smoke`: the paper's whole pipeline, offline, on a tiny model; then make's bookkeeping."""

import json
import subprocess

import pytest

from helpers import NEEDS_PPO, ROOT


def make(*args: str, dry: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *(["-n"] if dry else []), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)


def check_the_conversation_is_kept(run):
    """The red-team file's three-turn exchange (among the smoke run's prompts) keeps all its
    turns in every stage's records, and its SFT examples are the whole exchange, then a
    revision."""
    from caitool.render import prompt_completion, raw_reply_prompt
    from caitool.schema import check_sft, sft_examples

    def by_id(name):
        rows = [json.loads(line) for line in (run / name).read_text().splitlines()]
        return {row["id"]: row for row in rows}

    chats = [row for row in by_id("prompts.jsonl").values() if "messages" in row]
    assert len(chats) == 1, "the smoke run's prompts should hold one multi-turn conversation"
    [ask] = chats
    turns = ask["messages"]
    assert [m["role"] for m in turns] == ["user", "assistant", "user"]
    for name in ("round0.jsonl", "round1.jsonl", "round2.jsonl", "pairs.jsonl"):
        assert by_id(name)[ask["id"]]["messages"] == turns, name
    # A preference record holds the conversation as TRL's prompt.
    assert by_id("prefs.jsonl")[ask["id"]]["prompt"] == turns
    revised = by_id("round2.jsonl")[ask["id"]]
    assert check_sft(revised) is None
    examples = sft_examples(revised, all_rounds=True)
    assert [(ex.prompt, ex.response) for ex in examples] == [
        (turns, entry["revision"]) for entry in revised["revisions"]]
    trained = json.loads((run / "sft" / "caitool_training.json").read_text())
    rounds = by_id("round2.jsonl").values()
    assert trained["by_file"][str(run / "round2.jsonl")]["examples"] == sum(
        len(sft_examples(row, all_rounds=True)) for row in rounds)
    row = prompt_completion(examples[0].prompt, examples[0].response, trained["format"])
    assert row["prompt"] == (turns if trained["format"] == "chat" else raw_reply_prompt(turns))


@pytest.mark.slow
@NEEDS_PPO  # make smoke's RL stage is PPO
def test_make_smoke_runs_every_stage_and_reruns_only_what_changed(tmp_path):
    run = tmp_path / "smoke"
    result = make("smoke", f"SMOKE_RUN={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ["prompts.jsonl", "round0.jsonl", "round1.jsonl", "round2.jsonl", "helpful.jsonl",
                  "sft/config.json", "pairs.jsonl", "prefs.jsonl", "helpful-pairs.jsonl",
                  "helpful-prefs.jsonl", "rm/config.json", "ppo/config.json",
                  "answers-base.jsonl", "answers-sft.jsonl", "answers-ppo.jsonl", "eval.json"]:
        assert (run / stage).exists(), stage
    summary = json.loads((run / "eval.json").read_text())
    assert set(summary["systems"]) == {"base", "sl-cai", "rl-cai"}
    round2 = [json.loads(line) for line in (run / "round2.jsonl").read_text().splitlines()]
    assert all(len(r["revisions"]) == 2 for r in round2)
    prefs = [json.loads(line) for line in (run / "prefs.jsonl").read_text().splitlines()]
    assert prefs and all(0.5 <= p["p_chosen"] <= 1 for p in prefs)
    check_the_conversation_is_kept(run)
    check_the_report(run, tmp_path)

    # The RL stage sees helpfulness as well as harmlessness, about 3 prompts to 2 (6 and 4
    # here, from HELPFUL_SHARE): helpfulness pairs judged under the helpful constitution ...
    def lines(name):
        return [json.loads(line) for line in (run / name).read_text().splitlines()]

    helpful_prompts = lines("helpful-prompts.jsonl")
    assert len(lines("prompts.jsonl")) == 6 and len(helpful_prompts) == 4
    # The SFT data has the paper's 2 sampled answers per helpfulness prompt (HELPFUL_SAMPLES),
    # each its own example, beside one example per revision round of each red-team prompt.
    helpful = lines("helpful.jsonl")
    assert [r["id"] for r in helpful] == [p["id"] for p in helpful_prompts]
    assert all(len(r["responses"]) == 2 and "response" not in r for r in helpful)
    sft = json.loads((run / "sft" / "caitool_training.json").read_text())
    assert sft["by_file"][str(run / "helpful.jsonl")] == {"examples": 8}
    assert sft["examples"] == 8 + sum(len(r["revisions"]) for r in round2)
    helpful_prefs = lines("helpful-prefs.jsonl")
    assert len(helpful_prefs) == 4
    asked = json.dumps([p["prompt"] for p in helpful_prefs])
    assert all(json.dumps(p["prompt"])[1:-1] in asked for p in helpful_prompts)
    assert all(p["provenance"]["compare"]["constitution"] == "helpful" for p in helpful_prefs)
    assert all(p["provenance"]["compare"]["constitution"] == "harmless" for p in prefs)
    # ... the reward model trained on both label sets and measured on each ...
    rm_metrics = lines("rm-metrics.jsonl")
    by_file = rm_metrics[0]["by_file"]
    assert list(by_file) == [str(run / "prefs.jsonl"), str(run / "helpful-prefs.jsonl")]
    for name, labels in zip(by_file, (prefs, helpful_prefs)):
        # Every pair of each file reaches the reward model; each file holds out a share.
        assert by_file[name]["pairs"] + by_file[name]["heldout_pairs"] == len(labels)
        assert by_file[name]["pairs"] > 0 and by_file[name]["heldout_pairs"] > 0
    (heldout,) = [line for line in rm_metrics if "heldout_by_file" in line]
    assert heldout["heldout_pairs"] == sum(c["heldout_pairs"] for c in by_file.values())
    assert set(heldout["heldout_by_file"]) == set(by_file)
    assert "by file: " in result.stderr and "held-out pairwise accuracy by file" in result.stderr
    # ... and PPO's prompts drawn from both files, as long as the SFT data's answers.
    ppo_metrics = lines("ppo-metrics.jsonl")
    assert ppo_metrics[0]["by_file"] == {str(run / "prompts.jsonl"): {"prompts": 6},
                                         str(run / "helpful-prompts.jsonl"): {"prompts": 4}}
    ppo = json.loads((run / "ppo" / "caitool_training.json").read_text())
    assert ppo["prompts"] == 10 and ppo["response_length"] == 12

    # Finished: nothing left to do.
    again = make("smoke", f"SMOKE_RUN={run}", dry=True)
    assert "caitool critique" not in again.stdout and "train-" not in again.stdout
    # Losing one stage's output reruns that stage and what depends on it, nothing upstream.
    (run / "prefs.jsonl").unlink()
    partial = make("smoke", f"SMOKE_RUN={run}", dry=True).stdout
    assert "caitool compare" in partial and "caitool train-rm" in partial
    assert "caitool train-ppo" in partial and "caitool eval" in partial
    assert "caitool critique" not in partial and "caitool train-sft" not in partial
    assert "-c helpful" not in partial
    # Likewise for the helpfulness labels: the reward model and what follows, not the others.
    (run / "prefs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prefs))
    (run / "helpful-prefs.jsonl").unlink()
    partial = make("smoke", f"SMOKE_RUN={run}", dry=True).stdout
    assert "-c helpful" in partial and "caitool train-rm" in partial
    assert "caitool train-ppo" in partial and "-c harmless" not in partial

    # Human helpfulness labels, as the paper's preference model had: the reward model learns
    # from the AI harmlessness labels and people's helpfulness pairs, N_HELPFUL of them.
    (run / "helpful-prefs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in helpful_prefs))
    human = check_human_helpfulness_labels(run, tmp_path)
    rm = json.loads((run / "rm" / "caitool_training.json").read_text())
    assert list(rm["by_file"]) == [str(run / "prefs.jsonl"), str(human)]
    assert rm["data"][str(human)]["import"][0]["format"] == "hh-rlhf"
    # ... and eval follows the chain: the RL model's helpfulness labels came from people.
    marks = json.loads((run / "eval.json").read_text())["independence"]["systems"]
    assert "people (hh-rlhf)" in marks["rl-cai"]["labelled_by"]
    assert marks["rl-cai"]["evaluator_labelled_training_data"]  # the judge labelled the rest


def check_the_report(run, tmp_path):
    """make smoke writes report.html last: every section there, with the numbers that
    eval.json, judge-accuracy.json and the metrics files hold; then opened in a browser."""
    from report_checks import CHROMIUM, SECTIONS, check_rendered, percent, section_ids

    page = (run / "report.html").read_text()
    assert section_ids(page) == list(SECTIONS)
    summary = json.loads((run / "eval.json").read_text())
    for pair in summary["pairs"]:
        assert percent(pair["harmlessness"]["win_rate"]) in page
    for dimension in ("harmlessness", "helpfulness"):
        for system in summary["systems"]:
            assert f"{summary['elo'][dimension][system]['elo']:.1f} " in page
    accuracy = json.loads((run / "judge-accuracy.json").read_text())["files"][0]
    assert percent(accuracy["accuracy"]) in page and percent(accuracy["chance"]) in page
    assert "Expected calibration error" in page  # from judge-rows.jsonl
    rm = [json.loads(x) for x in (run / "rm-metrics.jsonl").read_text().splitlines()]
    heldout = [x for x in rm if "heldout_by_file" in x][-1]
    assert len(heldout["heldout_scores"]) == heldout["heldout_pairs"]
    for report in heldout["heldout_by_file"].values():
        assert f"{report['heldout_mean_margin']:.3f}" in page
    ppo = [json.loads(x) for x in (run / "ppo-metrics.jsonl").read_text().splitlines()]
    last = [x for x in ppo if "objective/scores" in x][-1]
    assert f"{last['objective/scores']:.3f}" in page
    round2 = [json.loads(x) for x in (run / "round2.jsonl").read_text().splitlines()]
    assert f"{len(round2):,} records in <code>round2.jsonl</code>" in page
    if CHROMIUM:
        check_rendered(run / "report.html", tmp_path)


def check_human_helpfulness_labels(run, tmp_path):
    from helpers import caitool
    from import_rows import hh_rows, write_jsonl

    source = write_jsonl(hh_rows() * 2, tmp_path / "hh")  # repeats are left out by import
    pairs = tmp_path / "human-prefs.jsonl"
    caitool("import", "hh-rlhf", "--as", "prefs", source, "-o", pairs)
    wanted = [f"SMOKE_RUN={run}", f"HUMAN_HELPFUL_PREFS={pairs}"]
    planned = make("smoke", *wanted, dry=True).stdout
    assert "human-helpful-prefs.jsonl" in planned and "caitool train-rm" in planned
    assert "-c helpful" not in planned and "caitool train-sft" not in planned
    done = make("smoke", *wanted)
    assert done.returncode == 0, done.stderr[-3000:]
    human = run / "human-helpful-prefs.jsonl"
    assert len(human.read_text().splitlines()) == 3  # N_HELPFUL is 4; the file has 3 pairs
    return human
