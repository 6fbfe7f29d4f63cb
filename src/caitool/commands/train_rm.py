from __future__ import annotations

from typing import Annotated

import typer

from caitool.commands._flags import command
from caitool.commands._training import EXTRA_FLAGS, Inputs, TrainFlags, run

CONTEXT_SETTINGS = EXTRA_FLAGS
NAME = "train-rm"
EXAMPLE = """    caitool train-rm prefs.jsonl -m ./sft -o ./rm --epochs 1
    caitool train-rm prefs.jsonl -m ./sft -o ./rm --labels hard --margin 0.5
    caitool train-rm prefs.jsonl -m ./sft -o ./rm --config rm.yaml --warmup_steps 10
    caitool train-rm rated.jsonl -m ./sft -o ./harm --target rating   # a score model"""


@command
def command(
    inputs: Inputs = None,
    target: Annotated[str | None, typer.Option(
        "--target", metavar="FIELD",
        help="Learn this numeric field of each record (e.g. a red-team 'rating') by regression "
             "instead of preferences: a score model for 'caitool eval --score-model'.")] = None,
    labels: Annotated[str, typer.Option(
        "--labels", help="soft: learn p_chosen itself; hard: chosen beats rejected; auto: soft "
                         "when the data has p_chosen.")] = "auto",
    margin: Annotated[float | None, typer.Option(
        "--margin", help="Margin the preferred answer must win by (a record's 'margin' wins).")] = None,
    eval_split: Annotated[float, typer.Option(
        "--eval-split", help="Fraction of each input file's prompts held out to measure pairwise "
                             "accuracy (with --target: the error) per file and overall.")] = 0.1,
    eval_file: Annotated[list[str] | None, typer.Option(
        "--eval-file", help="Held-out preference records (instead of --eval-split); several are "
                            "measured one by one.")] = None,
    too_long: Annotated[str, typer.Option(
        "--too-long", help="Pairs over --max-length: truncate (keep the end, where the score is "
                           "read), skip, or error. Each is reported.")] = "truncate",
    train: TrainFlags = None,
) -> None:
    """Train a reward (preference) model: a one-output sequence classifier, from preference records.

    With --target FIELD it is a score model instead: it learns to predict FIELD (a number on
    each record with a reply to score) with a mean squared error, and reports its held-out
    error beside that of always predicting the mean.

    With soft labels (p_chosen, as 'caitool compare' writes) the loss is the cross-entropy
    against p, so a tie teaches no preference. Starts from a causal or classifier checkpoint
    (a causal one gets a new score head). Several files are mixed (e.g. harmlessness and
    helpfulness labels); held-out pairwise accuracy is reported overall and per file.

    Every field of TRL's RewardConfig is a flag too (`--FIELD VALUE`, TRL's names) and a --config
    key; --help-trl lists them with TRL's help.
    """
    from caitool.training import rm

    if target is not None:
        from caitool.training import score_model

        rm.check_options(labels, too_long, eval_split, margin, target)
        run(score_model, NAME, inputs, train, target=target, eval_split=eval_split,
            eval_inputs=eval_file, too_long=too_long)
        return
    run(rm, NAME, inputs, train, labels=labels, margin=margin, eval_split=eval_split,
        eval_inputs=eval_file, too_long=too_long)
