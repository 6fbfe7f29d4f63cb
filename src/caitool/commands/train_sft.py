from __future__ import annotations

from dataclasses import dataclass

from caitool.commands._flags import flag
from caitool.commands._training import TrainFlags, training
from caitool.training.args import Request

NAME = "train-sft"
EXAMPLE = """    caitool train-sft round4.jsonl helpful.jsonl -m BASE -o sft --all-rounds
    caitool train-sft data.jsonl -m BASE -o sft --warmup_steps 0.1 --lr_scheduler_type cosine
    accelerate launch --multi_gpu --num_processes 8 -m caitool train-sft data.jsonl -m BASE -o sft"""


@dataclass
class SFTFlags:
    all_rounds: bool = flag(False, "--all-rounds",
                            help="Train on the revision of every round (one example per round), "
                                 "not only the final response.")


@training("caitool.training.sft", SFTFlags)
def command(train: TrainFlags, own: SFTFlags, asked: Request) -> None:
    """Supervised fine-tuning on revised responses (the paper's SL-CAI stage), with TRL.

    Reads caitool records ('prompt' or 'messages', and 'response'), 'prompt'/'completion'
    rows, or TRL 'messages' rows ending with the assistant's reply. The loss covers the reply
    only. Writes a model directory; metrics go to stdout as JSONL.

    Every field of TRL's SFTConfig is a flag too (`--FIELD VALUE`, TRL's names) and a --config
    key; --help-trl lists them with TRL's help.
    """
    from caitool.training import sft

    sft.train(NAME, asked, train, all_rounds=own.all_rounds)
