from __future__ import annotations

from typing import Annotated

import typer

from caitool.commands._flags import command
from caitool.commands._training import EXTRA_FLAGS, Inputs, TrainFlags, run

CONTEXT_SETTINGS = EXTRA_FLAGS
NAME = "train-dpo"
EXAMPLE = """    caitool train-dpo prefs.jsonl -m ./sft -o ./dpo --beta 0.1
    caitool train-dpo prefs.jsonl -m ./sft -o ./dpo --loss_type ipo --report-to tensorboard"""


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

    Every field of TRL's DPOConfig is a flag too (`--FIELD VALUE`, TRL's names) and a --config
    key; --help-trl lists them with TRL's help.
    """
    from caitool.training import dpo

    run(dpo, NAME, inputs, train, beta=beta)
