"""train-dpo widens the gap between the log-probabilities of chosen and rejected answers."""

from __future__ import annotations

import json

import pytest

from helpers import caitool
from train_helpers import (
    FAST,
    PROMPTS,
    build_chain,
    chain_dir,
    generate,
    logprob_margins,
    metrics,
    preference_rows,
    series,
    write,
)


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    return build_chain(chain_dir(tmp_path_factory))


def mean(values):
    return sum(values) / len(values)


def test_dpo_margin_grows(chain, tmp_path):
    train = preference_rows(48, seed=1)
    # Ties are left out (and said so); p_chosen < 0.5 flips the pair.
    train[0]["p_chosen"] = 0.5
    # Two files (as harmlessness and helpfulness pairs), each one's count reported.
    harmless = write(tmp_path / "prefs.jsonl", train[:30])
    helpful = write(tmp_path / "helpful-prefs.jsonl", train[30:])
    out = tmp_path / "dpo"
    result = caitool("train-dpo", harmless, helpful, "-m", chain["sft"], "-o", out,
                     "--max-steps", "12", "--batch-size", "8", "--learning-rate", "1e-3",
                     "--beta", "0.1", *FAST)
    err = result.stderr.decode()
    assert "left out 1 tied pair" in err
    assert f"47 pairs (chat format); by file: {harmless}: 29 pairs; {helpful}: 18 pairs" in err
    counts = {str(harmless): {"pairs": 29}, str(helpful): {"pairs": 18}}
    assert metrics(result.stdout)[0]["by_file"] == counts
    margins = series(metrics(result.stdout), "rewards/margins")
    assert len(margins) == 12 and mean(margins[-3:]) > mean(margins[:3]) + 0.2, margins

    held_out = preference_rows(16, seed=5)
    before = mean(logprob_margins(chain["sft"], held_out))
    after = mean(logprob_margins(out, held_out))
    assert after > before + 2, (before, after)
    summary = json.loads((out / "caitool_training.json").read_text())
    assert summary["pairs"] == 47 and summary["by_file"] == counts
    assert "kind" in generate(out, PROMPTS[0])[0]
