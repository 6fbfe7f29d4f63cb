from __future__ import annotations

from dataclasses import dataclass

from caitool.commands._flags import flag
from caitool.commands._training import TrainFlags, training
from caitool.training.args import Request

NAME = "train-ppo"
EXAMPLE = """    caitool train-ppo red_team.jsonl -m ./sft -r ./rm -o ./rl --kl-coef 0.05
    caitool train-ppo red_team.jsonl -m ./sft -r ./rm -o ./rl --num_ppo_epochs 2 --whiten_rewards"""


@dataclass
class PPOFlags:
    reward_model: str | None = flag(None, "-r", "--reward-model",
                                    help="The reward model (from train-rm); must share the policy's tokenizer.")
    value_model: str | None = flag(None, "--value-model",
                                   help="Where the value model starts (default: the reward model).")
    kl_coef: float | None = flag(None, "--kl-coef",
                                 help="Weight of the KL penalty to the starting policy (TRL default 0.05).")
    missing_eos_penalty: float | None = flag(None, "--missing-eos-penalty",
                                             help="Subtracted from the score of a response that never ends "
                                                  "(default 1.0).")
    max_new_tokens: int | None = flag(None, "--max-new-tokens",
                                      help="Most tokens per response (default: caitool generate's default, "
                                           "the length the SFT data was written at).")
    temperature: float | None = flag(None, "--temperature",
                                     help="Sampling temperature of the rollouts (TRL default 0.7).")


@training("caitool.training.ppo", PPOFlags)
def command(train: TrainFlags, own: PPOFlags, asked: Request) -> None:
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

    ppo.require_ppo()
    ppo.train(NAME, asked, train, reward_model=own.reward_model, value_model=own.value_model,
              kl_coef=own.kl_coef, missing_eos_penalty=own.missing_eos_penalty,
              max_new_tokens=own.max_new_tokens, temperature=own.temperature)
