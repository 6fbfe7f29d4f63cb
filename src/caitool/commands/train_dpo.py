from __future__ import annotations

from typing import Annotated

import typer

from caitool.commands.train_sft import Inputs
from caitool.options import TrainFlags, command

NAME = "train-dpo"
EXAMPLE = """    caitool train-dpo prefs.jsonl -m ./sft -o ./dpo --beta 0.1"""


@command
def command(
    inputs: Inputs = None,
    beta: Annotated[float | None, typer.Option(
        "--beta", help="Strength of the pull towards the starting model (TRL default 0.1).")] = None,
    train: TrainFlags = None,
) -> None:
    """Direct preference optimisation on preference records: the alternative to train-rm + train-ppo.

    Reads TRL preference rows ('prompt', 'chosen', 'rejected'), as 'caitool compare' writes
    them. Labels are hard: the preferred answer is the one 'p_chosen' favours, and ties are
    left out (and counted).
    """
    from caitool.training.run import train_dpo

    train_dpo(NAME, inputs or ["-"], train, beta=beta)
