"""`make smoke`: the paper's whole pipeline, offline, on a tiny model; then make's bookkeeping."""

import json
import subprocess

import pytest

from helpers import ROOT


def make(*args: str, dry: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *(["-n"] if dry else []), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_make_smoke_runs_every_stage_and_reruns_only_what_changed(tmp_path):
    run = tmp_path / "smoke"
    result = make("smoke", f"SMOKE_RUN={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ["prompts.jsonl", "round0.jsonl", "round1.jsonl", "round2.jsonl", "helpful.jsonl",
                  "sft/config.json", "pairs.jsonl", "prefs.jsonl", "rm/config.json",
                  "ppo/config.json", "answers-base.jsonl", "answers-sft.jsonl",
                  "answers-ppo.jsonl", "eval.json"]:
        assert (run / stage).exists(), stage
    summary = json.loads((run / "eval.json").read_text())
    assert set(summary["systems"]) == {"base", "sl-cai", "rl-cai"}
    round2 = [json.loads(line) for line in (run / "round2.jsonl").read_text().splitlines()]
    assert all(len(r["revisions"]) == 2 for r in round2)
    prefs = [json.loads(line) for line in (run / "prefs.jsonl").read_text().splitlines()]
    assert prefs and all(0.5 <= p["p_chosen"] <= 1 for p in prefs)

    # Finished: nothing left to do.
    again = make("smoke", f"SMOKE_RUN={run}", dry=True)
    assert "caitool critique" not in again.stdout and "train-" not in again.stdout
    # Losing one stage's output reruns that stage and what depends on it, nothing upstream.
    (run / "prefs.jsonl").unlink()
    partial = make("smoke", f"SMOKE_RUN={run}", dry=True).stdout
    assert "caitool compare" in partial and "caitool train-rm" in partial
    assert "caitool train-ppo" in partial and "caitool eval" in partial
    assert "caitool critique" not in partial and "caitool train-sft" not in partial
