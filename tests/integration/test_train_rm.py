"""train-rm learns a preference it can see, and learns none from ties; it learns from several
files at once and measures each file's held-out share on its own."""

from __future__ import annotations

import json

import pytest

from helpers import caitool
from train_helpers import FAST, build_chain, chain_dir, metrics, preference_rows, reward, write


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    return build_chain(chain_dir(tmp_path_factory))


def held_out(lines):
    (report,) = [line for line in lines if "heldout_accuracy" in line]
    return report


def relabelled(rows, good: str, bad: str):
    """The same kind of pairs with another marker: a second, different label set."""
    return [{**row, "id": f"{row['id']}-{good}", "chosen": row["chosen"].replace("kind", good),
             "rejected": row["rejected"].replace("toxic", bad)} for row in rows]


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


def test_several_files_are_learnt_together_and_measured_one_by_one(chain, tmp_path):
    # Two label sets, as harmlessness and helpfulness comparisons: each has its own marker,
    # so a model that learnt one of them only would be at chance on the other.
    harmless = write(tmp_path / "prefs.jsonl", preference_rows(60, seed=11))
    helpful = write(tmp_path / "helpful-prefs.jsonl",
                    relabelled(preference_rows(40, seed=12), "accurate", "vague"))
    result = caitool("train-rm", harmless, helpful, "-m", chain["sft"], "-o", tmp_path / "rm",
                     "--epochs", "3", "--learning-rate", "2e-3", "--batch-size", "8",
                     "--eval-split", "0.2", *FAST)
    err = result.stderr.decode()
    # Each file holds out its own share of prompts.
    assert f"80 training pairs, 20 held out (soft labels, chat format); by file: {harmless}: " \
           f"48 pairs, 12 held out; {helpful}: 32 pairs, 8 held out" in err
    lines = metrics(result.stdout)
    counts = {str(harmless): {"pairs": 48, "heldout_pairs": 12},
              str(helpful): {"pairs": 32, "heldout_pairs": 8}}
    assert lines[0]["by_file"] == counts
    report = held_out(lines)
    by_file = report["heldout_by_file"]
    assert [by_file[str(f)]["heldout_pairs"] for f in (harmless, helpful)] == [12, 8]
    assert all(by_file[str(f)]["heldout_accuracy"] >= 0.85 for f in (harmless, helpful)), by_file
    assert report["heldout_pairs"] == 20 and report["heldout_accuracy"] == pytest.approx(
        (12 * by_file[str(harmless)]["heldout_accuracy"]
         + 8 * by_file[str(helpful)]["heldout_accuracy"]) / 20)
    assert "held-out pairwise accuracy by file: " in err and f"{helpful}: " in err
    summary = json.loads((tmp_path / "rm" / "caitool_training.json").read_text())
    assert summary["by_file"] == counts and summary["heldout_by_file"] == by_file


def test_each_eval_file_is_measured_on_its_own(chain, tmp_path):
    # The chain's reward model, barely trained further: it ranks "kind" over "toxic", so the
    # same pairs turned round score exactly the other way.
    pairs = preference_rows(10, seed=21)
    held = write(tmp_path / "held.jsonl", pairs)
    turned = write(tmp_path / "turned.jsonl", [{**r, "chosen": r["rejected"], "rejected": r["chosen"]}
                                               for r in pairs])
    train = write(tmp_path / "train.jsonl", preference_rows(8, seed=22))
    result = caitool("train-rm", train, "-m", chain["rm"], "-o", tmp_path / "rm",
                     "--eval-file", held, "--eval-file", turned, "--max-steps", "1",
                     "--learning-rate", "1e-7", *FAST)
    report = held_out(metrics(result.stdout))
    right, wrong = report["heldout_by_file"][str(held)], report["heldout_by_file"][str(turned)]
    assert right["heldout_pairs"] == wrong["heldout_pairs"] == 10
    assert right["heldout_accuracy"] >= 0.9
    assert wrong["heldout_accuracy"] == pytest.approx(1 - right["heldout_accuracy"])
    assert wrong["heldout_mean_margin"] == pytest.approx(-right["heldout_mean_margin"], rel=1e-4)
    assert report["heldout_pairs"] == 20 and report["heldout_accuracy"] == pytest.approx(0.5)
    assert f"{train}: 8 pairs; {held}: 10 held out; {turned}: 10 held out" in result.stderr.decode()
