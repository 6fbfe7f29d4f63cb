from __future__ import annotations

from caitool.commands._rl import RLFlags
from caitool.commands._training import TrainFlags, training
from caitool.training.args import Request

NAME = "train-grpo"
EXAMPLE = """    caitool train-grpo red_team.jsonl helpful.jsonl -m ./sft -r ./rm -o ./grpo --kl-coef 0.05
    caitool train-grpo red_team.jsonl -m ./sft -r ./rm --reward rm+judge --judge ./judge -o ./grpo"""


@training("caitool.training.grpo", RLFlags)
def command(train: TrainFlags, rl: RLFlags, asked: Request) -> None:
    """GRPO of a policy on prompt records: the RL stage without PPO's value model.

    Each prompt gets --group-size responses; each response's advantage is its reward less
    the group's mean, over the group's spread. The reward is the reward model's score
    (--reward rm, the default), the feedback model's verdict against the starting policy's
    own answer (--reward judge, no reward model), or both (rm+judge), less
    --missing-eos-penalty for a response that never ends; --kl-coef weighs the KL to the
    starting policy (default 0.05, TRL's is 0). --batch-size counts responses (whole
    groups); --max-steps counts optimizer steps; --max-length leaves out longer prompts.

    Every field of TRL's GRPOConfig is a flag too (`--FIELD VALUE`, TRL's names) and a --config
    key; --help-trl lists them with TRL's help.
    """
    from caitool.training import grpo

    grpo.train(NAME, asked, train, options=rl.options())
