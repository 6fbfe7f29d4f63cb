from __future__ import annotations

from caitool.commands._rl import RLFlags
from caitool.commands._training import TrainFlags, training
from caitool.training.args import Request

NAME = "train-rloo"
EXAMPLE = """    caitool train-rloo red_team.jsonl helpful.jsonl -m ./sft -r ./rm -o ./rloo --group-size 4
    caitool train-rloo red_team.jsonl -m ./sft --reward judge --judge ./judge -c harmless -o ./rloo"""


@training("caitool.training.rloo", RLFlags)
def command(train: TrainFlags, rl: RLFlags, asked: Request) -> None:
    """RLOO of a policy on prompt records: the RL stage without PPO's value model.

    Each prompt gets --group-size responses; each response's baseline is the mean reward of
    the others. The reward is the reward model's score (--reward rm, the default), the
    feedback model's verdict against the starting policy's own answer (--reward judge, no
    reward model), or both (rm+judge), less --missing-eos-penalty for a response that never
    ends, less --kl-coef times the KL to the starting policy. --batch-size counts responses
    (whole groups); --max-steps counts optimizer steps; --max-length leaves out longer
    prompts.

    Every field of TRL's RLOOConfig is a flag too (`--FIELD VALUE`, TRL's names) and a --config
    key; --help-trl lists them with TRL's help.
    """
    from caitool.training import rloo

    rloo.train(NAME, asked, train, options=rl.options())
