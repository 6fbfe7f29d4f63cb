"""train-rm learns a preference it can see, and learns none from ties."""

from __future__ import annotations

import json

import pytest

from helpers import caitool
from train_helpers import FAST, build_chain, chain_dir, metrics, preference_rows, reward, write


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    return build_chain(chain_dir(tmp_path_factory))


def held_out(lines):
    (report,) = [line for line in lines if "heldout_pairs" in line]
    return report


def test_reward_model_learns_the_marker(chain):
    report = held_out(metrics((chain["rm"].parent / "rm_metrics.jsonl").read_bytes()))
    assert report["heldout_pairs"] == 20 and report["heldout_accuracy"] >= 0.9
    summary = json.loads((chain["rm"] / "caitool_training.json").read_text())
    assert summary["labels"] == "soft" and summary["heldout_accuracy"] == report["heldout_accuracy"]

    # The directory is an ordinary one-output classifier that scores new text.
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(chain["rm"]).num_labels == 1
    assert AutoTokenizer.from_pretrained(chain["rm"]).pad_token is not None
    prompt = "Tell me about the park."
    assert reward(chain["rm"], prompt, "people went for a kind walk") > \
        reward(chain["rm"], prompt, "people went for a toxic walk")


def test_soft_labels_of_one_half_teach_no_preference(chain, tmp_path):
    # Same pairs and recipe as the chain's reward model, but every label is a tie.
    data = write(tmp_path / "ties.jsonl", preference_rows(100, p_chosen=0.5))
    result = caitool("train-rm", data, "-m", chain["sft"], "-o", tmp_path / "rm",
                     "--epochs", "3", "--learning-rate", "2e-3", "--batch-size", "8",
                     "--eval-split", "0.2", *FAST)
    tie = held_out(metrics(result.stdout))
    taught = held_out(metrics((chain["rm"].parent / "rm_metrics.jsonl").read_bytes()))
    assert tie["heldout_accuracy"] is None  # every held-out label is a tie
    assert tie["heldout_mean_abs_margin"] < 0.1 * taught["heldout_mean_abs_margin"], (tie, taught)


def test_hard_labels_margin_and_long_pairs_are_truncated_not_dropped(chain, tmp_path):
    rows = preference_rows(12, seed=3, p_chosen=None)
    rows[0]["prompt"] = "Tell me a story about a brave dog. " * 20
    rows[1]["margin"] = 2.0
    data = write(tmp_path / "prefs.jsonl", rows)
    out = tmp_path / "rm"
    result = caitool("train-rm", data, "-m", chain["tiny"], "-o", out,
                     "--labels", "hard", "--margin", "0.5", "--max-length", "48",
                     "--max-steps", "1", "--eval-split", "0", "--lora", "--save-adapter", *FAST)
    err = result.stderr.decode()
    assert "1 training pair(s) longer than 48 tokens were cut" in err
    assert "12 training pairs, 0 held out (hard labels" in err
    assert "no held-out pairs" in err
    # A LoRA adapter for a classifier keeps its new score head beside the adapter.
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in (adapter["modules_to_save"] or [])
    error = caitool("train-rm", data, "-m", chain["tiny"], "-o", tmp_path / "rm2",
                    "--max-length", "48", "--too-long", "error", check=False)
    assert error.returncode != 0 and "over --max-length 48" in error.stderr.decode()
