from __future__ import annotations

from dataclasses import dataclass

from caitool.commands._flags import flag
from caitool.commands._training import TrainFlags, training
from caitool.training.args import Request

NAME = "train-rm"
EXAMPLE = """    caitool train-rm prefs.jsonl -m ./sft -o ./rm --epochs 1
    caitool train-rm prefs.jsonl -m ./sft -o ./rm --labels hard --margin 0.5
    caitool train-rm prefs.jsonl -m ./sft -o ./rm --config rm.yaml --warmup_steps 10
    caitool train-rm rated.jsonl -m ./sft -o ./harm --target rating   # a score model"""


@dataclass
class RMFlags:
    target: str | None = flag(None, "--target", metavar="FIELD",
                              help="Learn this numeric field of each record (e.g. a red-team 'rating') "
                                   "by regression instead of preferences: a score model for "
                                   "'caitool eval --score-model'.")
    labels: str = flag("auto", "--labels",
                       help="soft: learn p_chosen itself; hard: chosen beats rejected; auto: soft "
                            "when the data has p_chosen.")
    margin: float | None = flag(None, "--margin",
                                help="Margin the preferred answer must win by (a record's 'margin' wins).")
    eval_split: float = flag(0.1, "--eval-split",
                             help="Fraction of each input file's prompts held out to measure pairwise "
                                  "accuracy (with --target: the error) per file and overall.")
    eval_file: list[str] | None = flag(None, "--eval-file",
                                       help="Held-out preference records (instead of --eval-split); "
                                            "several are measured one by one.")
    too_long: str = flag("truncate", "--too-long",
                         help="Pairs over --max-length: truncate (keep the end, where the score is "
                              "read), skip, or error. Each is reported.")


@training("caitool.training.rm", RMFlags)
def command(train: TrainFlags, own: RMFlags, asked: Request) -> None:
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

    if own.target is not None:
        from caitool.training import score_model

        rm.check_options(own.labels, own.too_long, own.eval_split, own.margin, own.target)
        score_model.train(NAME, asked, train, target=own.target, eval_split=own.eval_split,
                          eval_inputs=own.eval_file, too_long=own.too_long)
        return
    rm.train(NAME, asked, train, labels=own.labels, margin=own.margin, eval_split=own.eval_split,
             eval_inputs=own.eval_file, too_long=own.too_long)
