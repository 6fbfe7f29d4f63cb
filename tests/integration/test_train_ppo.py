"""train-ppo raises the reward model's score, with the KL to the start reported; it mixes
several prompt files, and says when responses do not end."""

from __future__ import annotations

import json
import math

import pytest

from helpers import NEEDS_PPO, caitool, run_cli
from train_helpers import PROMPTS, build_chain, chain_dir, generate, metrics, series, write


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    return build_chain(chain_dir(tmp_path_factory))


def mean(values):
    return sum(values) / len(values)


@NEEDS_PPO
def test_ppo_raises_the_reward(chain, tmp_path):
    # The SFT policy says "kind" or "toxic" about equally; the reward model prefers "kind".
    # Two prompt files (as red-team and helpfulness prompts), mixed in every rollout batch.
    red_team = write(tmp_path / "red-team.jsonl", [{"prompt": p} for p in PROMPTS * 2][:10])
    helpful = write(tmp_path / "helpful.jsonl", [{"prompt": p} for p in PROMPTS * 2][10:])
    out = tmp_path / "ppo"
    result = caitool("train-ppo", red_team, helpful, "-m", chain["sft"], "-r", chain["rm"],
                     "-o", out, "--max-steps", "10", "--batch-size", "16",
                     "--max-new-tokens", "10", "--learning-rate", "1e-3", "--seed", "1")
    lines = metrics(result.stdout)
    counts = {str(red_team): {"prompts": 10}, str(helpful): {"prompts": 6}}
    assert lines[0]["by_file"] == counts
    err = result.stderr.decode()
    assert f"16 prompts (chat format), rollout batch 16; by file: {red_team}: 10 prompts; " \
           f"{helpful}: 6 prompts" in err
    scores, kls = series(lines, "objective/scores"), series(lines, "objective/kl")
    assert len(scores) == 10 and len(kls) == 10
    assert mean(scores[-3:]) > mean(scores[:3]) + 0.5, scores
    assert all(math.isfinite(kl) for kl in kls) and kls[-1] > 0
    assert "mean reward" in result.stderr.decode() and "KL to the start" in result.stderr.decode()
    summary = json.loads((out / "caitool_training.json").read_text())
    assert summary["value_model"] == str(chain["rm"]) and summary["missing_eos_penalty"] == 1.0
    assert summary["by_file"] == counts and summary["response_length"] == 10
    # The policy's answers end within 10 tokens: no warning, and the figure says so.
    assert summary["ended_fraction"] > 0.5 and "ended within" not in err
    assert len(series(lines, "ended_fraction")) == 10

    # The policy is an ordinary causal LM directory that generates, now mostly "kind".
    texts = [t for p in PROMPTS[:4] for t in generate(out, p, n=4, temperature=0.7)]
    assert sum("kind" in t for t in texts) > sum("toxic" in t for t in texts), texts


@NEEDS_PPO
def test_different_tokenizers_are_refused(tmp_path, tiny_model):
    from caitool.testing.tiny import build

    other = build(tmp_path / "rm-512", seq_cls=True, vocab_size=512)
    prompts = write(tmp_path / "p.jsonl", [{"prompt": "hi"}] * 4)
    result = caitool("train-ppo", prompts, "-m", tiny_model, "-r", other, "-o", tmp_path / "o",
                     check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in err
    assert "has a different tokenizer from the policy" in err and "must share one tokenizer" in err
    # A causal model is not a reward model.
    result = caitool("train-ppo", prompts, "-m", tiny_model, "-r", tiny_model, "-o", tmp_path / "o",
                     check=False)
    assert result.returncode != 0 and "is not a reward model" in result.stderr.decode()


@NEEDS_PPO
def test_unended_responses_are_penalised_checkpoint_and_resume(chain, tmp_path):
    prompts = write(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    out = tmp_path / "ppo"
    # Two tokens are too few for the policy's answers to reach their end-of-sequence token.
    common = [prompts, "-m", chain["sft"], "-r", chain["rm"], "-o", out, "--batch-size", "4",
              "--max-new-tokens", "2", "--missing-eos-penalty", "10", "--save-steps", "1"]
    run = caitool("train-ppo", *common, "--max-steps", "2")
    first = metrics(run.stdout)
    assert series(first, "val/num_eos_tokens") == [0, 0]
    assert series(first, "ended_fraction") == [0.0, 0.0]
    # Said once, with the figures, not once per step.
    err = run.stderr.decode()
    assert err.count("ended within --max-new-tokens 2") == 1, err
    assert "step 1: only 0 of 4 responses (0%) ended within --max-new-tokens 2: each unended " \
           "one loses --missing-eos-penalty 10" in err
    assert "over the run, 0 of 8 responses (0%) ended" in err
    # The reward model's scores are a few units either way: the penalty dominates.
    assert all(score < -5 for score in series(first, "objective/scores"))
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").exists()
    assert (checkpoint / "value_model" / "config.json").exists()
    resumed = caitool("train-ppo", *common, "--max-steps", "3", "--resume")
    assert [line["step"] for line in metrics(resumed.stdout) if "objective/kl" in line] == [3]
    assert "resuming from" in resumed.stderr.decode()
    assert (out / "checkpoints" / "checkpoint-3").is_dir()


@pytest.mark.parametrize("flags", [["--help-trl"], ["-r", "rm", "-o", "out"]])
def test_without_ppo_in_trl_train_ppo_stops_in_one_line(flags, tmp_path, monkeypatch):
    # As TRL 1.13 and later are: no trl.experimental.ppo to import.
    import sys
    from importlib.metadata import version

    monkeypatch.setitem(sys.modules, "trl.experimental.ppo", None)
    monkeypatch.chdir(tmp_path)
    prompts = write(tmp_path / "p.jsonl", [{"prompt": "hi"}] * 4)
    result = run_cli("train-ppo", prompts, "-m", "policy", *flags)
    err = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"PPO is not in the installed trl {version('trl')} (TRL 1.13 removed it; trl 1.12 " \
           "is the last release with it" in err
    assert not (tmp_path / "out").exists()
