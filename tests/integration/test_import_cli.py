"""`caitool import` in real processes and pipes: hh-rlhf pairs from a gzipped file train a
reward model straight from the pipe, and red-team prompts from one JSON array feed the next
command."""

from __future__ import annotations

import gzip
import json
import random

from helpers import records, shell
from import_rows import red_team_rows, transcript
from train_helpers import FAST, PROMPTS, WORDS


def hh_file(path, n: int = 24):
    """hh-rlhf rows (two-turn conversations) whose better reply carries the word 'kind'."""
    rng = random.Random(5)
    rows = []
    for i in range(n):
        ask = f"{rng.choice(PROMPTS)} ({i})"
        reply = " ".join(rng.choice(WORDS) for _ in range(3))
        opening = [ask, "Could you say a little more?", "Yes, please go on."]
        rows.append({"chosen": transcript(*opening, f"{reply} kind"),
                     "rejected": transcript(*opening, f"{reply} toxic"), "subset": "test"})
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return path


def test_hh_rlhf_prefs_train_a_reward_model_from_the_pipe(tiny_model, tmp_path):
    data = hh_file(tmp_path / "train.jsonl.gz")
    out = tmp_path / "rm"
    result = shell(f"caitool import hh-rlhf --as prefs {data} | caitool train-rm - -m {tiny_model} "
                   f"-o {out} --max-steps 2 --eval-split 0.25 {' '.join(FAST)}",
                   env={"HF_HUB_OFFLINE": "1"}, timeout=600)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "caitool import: 24 records written from 24 rows" in err
    assert "hard labels" in err  # human labels: no p_chosen
    summary = json.loads((out / "caitool_training.json").read_text())
    assert summary["heldout_pairs"] == 6
    assert (out / "config.json").is_file()


def test_red_team_prompts_flow_into_the_next_command(tmp_path):
    path = tmp_path / "red_team_attempts.jsonl.gz"
    path.write_bytes(gzip.compress(json.dumps(red_team_rows(), indent=2).encode()))
    result = shell(f"caitool import red-team-attempts {path} --turns all "
                   "| caitool generate --backend fake -m fake | head -n 1",
                   env={"HF_HUB_OFFLINE": "1", "CAITOOL_QUIET": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    (answered,) = records(result.stdout)
    assert answered["messages"][-1]["content"] == "It's my shed really, they borrowed it."
    assert answered["rating"] == 2.0 and isinstance(answered["response"], str)
    assert answered["provenance"]["import"]["format"] == "red-team-attempts"
