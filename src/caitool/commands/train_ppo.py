from __future__ import annotations

from typing import Annotated

import typer

from caitool.commands._flags import command
from caitool.commands._training import EXTRA_FLAGS, Inputs, TrainFlags, run

CONTEXT_SETTINGS = EXTRA_FLAGS
NAME = "train-ppo"
EXAMPLE = """    caitool train-ppo red_team.jsonl -m ./sft -r ./rm -o ./rl --kl-coef 0.05
    caitool train-ppo red_team.jsonl -m ./sft -r ./rm -o ./rl --num_ppo_epochs 2 --whiten_rewards"""


@command
def command(
    inputs: Inputs = None,
    reward_model: Annotated[str | None, typer.Option(
        "-r", "--reward-model", help="The reward model (from train-rm); must share the policy's tokenizer.")] = None,
    value_model: Annotated[str | None, typer.Option(
        "--value-model", help="Where the value model starts (default: the reward model).")] = None,
    kl_coef: Annotated[float | None, typer.Option(
        "--kl-coef", help="Weight of the KL penalty to the starting policy (TRL default 0.05).")] = None,
    missing_eos_penalty: Annotated[float | None, typer.Option(
        "--missing-eos-penalty", help="Subtracted from the score of a response that never ends (default 1.0).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        "--max-new-tokens", help="Most tokens per response (default: caitool generate's default, "
                                 "the length the SFT data was written at).")] = None,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", help="Sampling temperature of the rollouts (TRL default 0.7).")] = None,
    train: TrainFlags = None,
) -> None:
    """PPO of a policy against a reward model on prompt records (the paper's RL stage).

    The reward is the reward model's score minus a KL penalty to the starting policy.
    Responses stop at the end-of-sequence token; one that never ends is penalised (a warning
    says when fewer than half end). --max-steps counts rollout batches; --max-length cuts long
    prompts. Several prompt files are mixed (e.g. red-team and helpfulness prompts), each
    file's count reported.

    Every field of TRL's PPOConfig is a flag too (`--FIELD VALUE`, TRL's names) and a --config
    key; --help-trl lists them with TRL's help.
    """
    from caitool.training import ppo

    run(ppo, NAME, inputs, train, reward_model=reward_model, value_model=value_model,
        kl_coef=kl_coef, missing_eos_penalty=missing_eos_penalty,
        max_new_tokens=max_new_tokens, temperature=temperature)
