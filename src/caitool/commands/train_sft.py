from __future__ import annotations

from typing import Annotated

import typer

from caitool.options import TrainFlags, command

NAME = "train-sft"
EXAMPLE = """    caitool train-sft round4.jsonl helpful.jsonl -m BASE -o sft --all-rounds
    accelerate launch --multi_gpu --num_processes 8 -m caitool train-sft data.jsonl -m BASE -o sft"""

Inputs = Annotated[list[str], typer.Argument(
    help="JSONL files (- for stdin); several are simply concatenated.", show_default=False)]


@command
def command(
    inputs: Inputs = None,
    all_rounds: Annotated[bool, typer.Option(
        "--all-rounds", help="Train on the revision of every round (one example per round), "
                             "not only the final response.")] = False,
    train: TrainFlags = None,
) -> None:
    """Supervised fine-tuning on revised responses (the paper's SL-CAI stage), with TRL.

    Reads caitool records ('prompt' or 'messages', and 'response'), 'prompt'/'completion'
    rows, or TRL 'messages' rows ending with the assistant's reply. The loss covers the reply
    only. Writes a model directory; metrics go to stdout as JSONL.
    """
    from caitool.training.run import train_sft

    train_sft(NAME, inputs or ["-"], train, all_rounds=all_rounds)
