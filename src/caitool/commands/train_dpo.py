from __future__ import annotations

from dataclasses import dataclass

from caitool.commands._flags import flag
from caitool.commands._training import TrainFlags, training
from caitool.training.args import Request

NAME = "train-dpo"
EXAMPLE = """    caitool train-dpo prefs.jsonl -m ./sft -o ./dpo --beta 0.1
    caitool train-dpo prefs.jsonl -m ./sft -o ./dpo --loss_type ipo --report-to tensorboard"""


@dataclass
class DPOFlags:
    beta: float | None = flag(None, "--beta",
                              help="Strength of the pull towards the starting model (TRL default 0.1).")


@training("caitool.training.dpo", DPOFlags)
def command(train: TrainFlags, own: DPOFlags, asked: Request) -> None:
    """Direct preference optimisation on preference records: the alternative to train-rm + train-ppo.

    Reads TRL preference rows ('prompt', 'chosen', 'rejected'), as 'caitool compare' writes
    them. Labels are hard: the preferred answer is the one 'p_chosen' favours, and ties are
    left out (and counted).

    Every field of TRL's DPOConfig is a flag too (`--FIELD VALUE`, TRL's names) and a --config
    key; --help-trl lists them with TRL's help.
    """
    from caitool.training import dpo

    dpo.train(NAME, asked, train, beta=own.beta)
