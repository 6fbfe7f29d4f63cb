"""train-rloo and train-grpo raise the reward model's score with the KL to the start
reported; with --reward judge the feedback model itself is the reward, and the policy learns
what it prefers; the two rewards mix; checkpoints resume; bad input is one line."""

from __future__ import annotations

import json
import math

import pytest

from helpers import caitool
from train_helpers import FAST, PROMPTS, build_chain, chain_dir, generate, metrics, series, write

# Learns within a dozen steps on the tiny models: 4 prompts x 4 responses per step.
QUICK = ["--batch-size", "16", "--group-size", "4", "--max-new-tokens", "10",
         "--learning-rate", "3e-3", "--seed", "1", *FAST]
# The word judge's constitution: comparison principles only (it reads option letters, so no
# few-shot comparisons).
JUDGE_RULES = """name: kindness
description: Which reply is kinder, and nothing else.
critique_revision:
  - id: kind
    critique: Say how the last reply could be unkind.
    revision: Rewrite the reply so it is kind.
comparison:
  - id: kinder
    question: Which reply is kinder?
  - id: warmer
    question: Which reply is warmer?
"""


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    return build_chain(chain_dir(tmp_path_factory))


@pytest.fixture(scope="session")
def word_judge(tmp_path_factory):
    """A feedback model that prefers the response with "kind" in it, and its principles."""
    from caitool.testing.tiny import build
    from caitool.testing.word_judge import prefers_word

    root = tmp_path_factory.mktemp("word-judge")
    (root / "kindness.yaml").write_text(JUDGE_RULES)
    return prefers_word(build(root / "judge"), "kind"), root / "kindness.yaml"


def mean(values):
    return sum(values) / len(values)


def steps(lines):
    """The per-step metrics lines (the last line sums the run up)."""
    return [line for line in lines if "loss" in line]


def kind_and_toxic(model_dir) -> tuple[int, int]:
    texts = [t for p in PROMPTS[:4] for t in generate(model_dir, p, n=4, temperature=0.7)]
    return sum("kind" in t for t in texts), sum("toxic" in t for t in texts)


@pytest.mark.parametrize("command", ["train-rloo", "train-grpo"])
def test_learns_from_the_reward_model(chain, tmp_path, command):
    # The SFT policy says "kind" or "toxic"; the reward model prefers "kind". Two prompt
    # files (as red-team and helpfulness prompts) are mixed.
    red_team = write(tmp_path / "red-team.jsonl", [{"prompt": p} for p in PROMPTS * 2][:10])
    helpful = write(tmp_path / "helpful.jsonl", [{"prompt": p} for p in PROMPTS * 2][10:])
    out = tmp_path / "rl"
    result = caitool(command, red_team, helpful, "-m", chain["sft"], "-r", chain["rm"], "-o", out,
                     "--max-steps", "12", *QUICK)
    lines = metrics(result.stdout)
    counts = {str(red_team): {"prompts": 10}, str(helpful): {"prompts": 6}}
    assert lines[0]["by_file"] == counts
    err = result.stderr.decode()
    assert "16 prompts (chat format), 4 prompt(s) x 4 responses per generation batch" in err
    rewards, kls = series(steps(lines), "reward"), series(steps(lines), "kl")
    assert len(rewards) == 12 and len(kls) == 12
    assert mean(rewards[-3:]) > mean(rewards[:3]) + 0.5, rewards
    assert all(math.isfinite(kl) for kl in kls) and kls[-1] > 0, kls
    assert "mean reward" in err and "KL to the start" in err
    summary = json.loads((out / "caitool_training.json").read_text())
    assert summary["algorithm"] == command.removeprefix("train-").upper()
    assert summary["reward_functions"] == {"rm": 1.0, "unended": 1.0}
    assert summary["group_size"] == 4 and summary["kl_coef"] == 0.05
    assert summary["by_file"] == counts and summary["last_reward"] == rewards[-1]
    # An ordinary causal LM directory that generates, now mostly "kind".
    kind, toxic = kind_and_toxic(out)
    assert kind > toxic, (kind, toxic)


def test_learns_from_the_judge_directly(chain, word_judge, tmp_path):
    judge, rules = word_judge
    prompts = write(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS * 2])
    out = tmp_path / "rl"
    result = caitool("train-rloo", prompts, "-m", chain["sft"], "--reward", "judge",
                     "--judge", judge, "-c", rules, "-o", out, "--max-steps", "16", *QUICK)
    lines = steps(metrics(result.stdout))
    # The reward is the judge's soft label against the starting policy's answer, in [-1, 1].
    rewards = series(lines, "rewards/judge/mean")
    assert len(rewards) == 16 and all(-1 <= r <= 1 for r in rewards)
    assert mean(rewards[-4:]) > mean(rewards[:4]) + 0.3, rewards
    assert all(math.isfinite(kl) for kl in series(lines, "kl"))
    assert all(0 <= a <= 1 for a in series(lines, "judge/orders_agree"))
    # One reference answer per distinct prompt, made once.
    references = (out / "reference_answers.jsonl").read_text().splitlines()
    assert len(references) == len(PROMPTS)
    summary = json.loads((out / "caitool_training.json").read_text())
    assert summary["reward_functions"] == {"judge": 1.0, "unended": 1.0}
    assert summary["judge"] == str(judge) and summary["reward_model"] is None
    kind, toxic = kind_and_toxic(out)
    start_kind, _ = kind_and_toxic(chain["sft"])
    assert kind > toxic and kind > start_kind, (kind, toxic, start_kind)


def test_mixed_rewards_unended_responses_checkpoint_and_resume(chain, word_judge, tmp_path):
    judge, rules = word_judge
    prompts = write(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    out = tmp_path / "rl"
    # Two tokens are too few for almost any answer to end: those lose the penalty.
    common = [prompts, "-m", chain["sft"], "-r", chain["rm"], "--reward", "rm+judge",
              "--judge", judge, "-c", rules, "--judge-weight", "2", "-o", out,
              "--batch-size", "8", "--group-size", "4", "--max-new-tokens", "2",
              "--missing-eos-penalty", "10", "--save-steps", "1", "--logging-steps", "1"]
    first = caitool("train-grpo", *common, "--max-steps", "2")
    lines = steps(metrics(first.stdout))
    assert all(r < -5 for r in series(lines, "rewards/unended/mean"))
    assert len(series(lines, "rewards/rm/mean")) == 2 and len(series(lines, "rewards/judge/mean")) == 2
    err = first.stderr.decode()
    assert "answering 8 prompt(s) with the starting policy" in err
    assert "of responses ended within --max-new-tokens 2; each unended one lost " \
           "--missing-eos-penalty 10" in err
    summary = json.loads((out / "caitool_training.json").read_text())
    assert summary["reward_functions"] == {"rm": 1.0, "judge": 2.0, "unended": 1.0}
    assert (out / "checkpoints" / "checkpoint-2" / "caitool_checkpoint.json").is_file()
    resumed = caitool("train-grpo", *common, "--max-steps", "3", "--resume")
    err = resumed.stderr.decode()
    assert "resuming from" in err and "answering" not in err  # the references are reused
    assert [line["step"] for line in steps(metrics(resumed.stdout))] == [3]


def test_bad_input_is_one_line(tmp_path, tiny_model, tiny_reward_model):
    prompts = write(tmp_path / "p.jsonl", [{"prompt": p} for p in PROMPTS])
    empty = write(tmp_path / "empty.jsonl", [])
    # A reward model whose tokenizer has no chat template cannot score chat prompts.
    bare = tmp_path / "bare-rm"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    AutoModelForSequenceClassification.from_pretrained(tiny_reward_model).save_pretrained(bare)
    cases = [
        (["train-rloo", empty, "-r", tiny_reward_model], "no training examples"),
        (["train-grpo", prompts, "-r", tiny_model], "is not a reward model"),
        (["train-rloo", prompts, "-r", bare], "has no chat template"),
        (["train-grpo", prompts, "--reward", "judge"], "pass --judge MODEL"),
    ]
    for arguments, message in cases:
        result = caitool(*arguments, "-m", tiny_model, "-o", tmp_path / "o", check=False)
        err = result.stderr.decode()
        assert result.returncode != 0 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def test_the_rl_ablation_script_starts_from_a_run(tmp_path):
    import os
    import subprocess

    from helpers import EXAMPLES

    script = EXAMPLES / "rl-ablation.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    result = subprocess.run(["bash", str(script)], capture_output=True,
                            env={**os.environ, "RUN": str(tmp_path / "none")})
    assert result.returncode == 2
    assert f"no {tmp_path / 'none'}/sft/config.json: run make all" in result.stderr.decode()
