"""train-rm: a reward model (a one-output sequence classifier) from preference records.

Each answer is scored on the prompt as the policy sees it, then the answer's tokens and the
end-of-sequence token: exactly the sequences ``train-ppo`` hands the reward model. The loss
is :mod:`caitool.training.reward`'s soft-label one; held-out pairwise accuracy is reported.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from caitool import console
from caitool.errors import CaitoolError
from caitool.render import policy_prompt_ids, reply_ids
from caitool.schema import PreferenceExample, check_preference, preference_example
from caitool.training import args, data, fit

# Held-out score pairs written to the metrics file: enough for a histogram, bounded for a big run.
HELDOUT_SCORES_KEPT = 10_000

OWNED: dict[str, str] = {}


def config_class() -> type:
    from trl import RewardConfig

    return RewardConfig


def configure(flags: Any, asked: args.Request) -> args.Settings:
    return args.build(config_class(), flags, asked, str(Path(flags.output) / fit.CHECKPOINTS),
                      shortcuts=args.shortcut_values(flags))


def pair_rows(command: str, groups: list[list[PreferenceExample]], tokenizer, fmt: str,
              max_length: int | None, soft: bool, margin: float | None,
              too_long: str, name: str) -> list[list[dict[str, Any]]]:
    """Tokenized pairs of each group (one per input file); pairs over ``max_length`` cut to
    their end, skipped, or an error (cut and skipped pairs are counted over all groups)."""
    result: list[list[dict[str, Any]]] = []
    cut = skipped = 0
    for examples in groups:
        rows: list[dict[str, Any]] = []
        for ex in examples:
            prompt = policy_prompt_ids(tokenizer, ex.prompt, fmt)
            chosen = prompt + reply_ids(tokenizer, ex.chosen, fmt)
            rejected = prompt + reply_ids(tokenizer, ex.rejected, fmt)
            if max_length is not None and max(len(chosen), len(rejected)) > max_length:
                if too_long == "error":
                    raise CaitoolError(
                        f"a {name} pair is {max(len(chosen), len(rejected))} tokens long, over "
                        f"--max-length {max_length} (raise it, or use --too-long truncate/skip)")
                if too_long == "skip":
                    skipped += 1
                    continue
                chosen, _ = data.keep_end(chosen, max_length)
                rejected, _ = data.keep_end(rejected, max_length)
                cut += 1
            p = (1.0 if ex.p_chosen is None else ex.p_chosen) if soft else 1.0
            row_margin = ex.margin if ex.margin is not None else (margin or 0.0)
            rows.append({"chosen_ids": chosen, "rejected_ids": rejected, "p_chosen": p,
                         "margin": float(row_margin)})
        result.append(rows)
    if cut:
        console.warn(command, f"{cut} {name} pair(s) longer than {max_length} tokens were cut "
                              "to their last tokens (the prompt's start is lost)")
    if skipped:
        console.warn(command, f"{skipped} {name} pair(s) longer than {max_length} tokens "
                              "were left out (--too-long skip)")
    return result


def heldout_reports(scores: list[tuple[float, float]], groups: list[list[dict[str, Any]]],
                    names: list[str]) -> dict[str, Any]:
    """The held-out report over all pairs, and (``heldout_by_file``) over each file's
    share; ``scores`` are those of the groups' rows in order."""
    from caitool.training.reward import pairwise_report

    overall = pairwise_report(scores, [row["p_chosen"] for rows in groups for row in rows])
    per_file, start = [], 0
    for rows in groups:
        per_file.append(pairwise_report(scores[start:start + len(rows)],
                                        [row["p_chosen"] for row in rows]))
        start += len(rows)
    table = data.by_file(names, **{key: [r[key] for r in per_file] for key in overall})
    # Each held-out pair's two scores, so that a run report can draw chosen against rejected.
    kept = [[round(float(c), 4), round(float(r), 4)] for c, r in scores[:HELDOUT_SCORES_KEPT]]
    return {**overall, "heldout_by_file": table, "heldout_scores": kept}


def _accuracy(report: dict[str, Any]) -> str:
    accuracy = report["heldout_accuracy"]
    return f"{'n/a' if accuracy is None else f'{accuracy:.3f}'} on {report['heldout_pairs']} pairs"


def check_options(labels: str, too_long: str, eval_split: float,
                  margin: float | None = None, target: str | None = None) -> None:
    if target is not None:
        if not target.strip():
            raise CaitoolError("--target needs the name of a numeric field")
        for flag, given in (("--labels", labels != "auto"), ("--margin", margin is not None)):
            if given:
                raise CaitoolError(f"{flag} is for preference records; --target learns a number")
    if labels not in ("auto", "soft", "hard"):
        raise CaitoolError(f"--labels must be auto, soft or hard, not '{labels}'")
    if too_long not in ("truncate", "skip", "error"):
        raise CaitoolError(f"--too-long must be truncate, skip or error, not '{too_long}'")
    if not 0 <= eval_split < 1:
        raise CaitoolError("--eval-split must be in [0, 1)")
    if margin is not None and not math.isfinite(margin):
        raise CaitoolError(f"--margin: {margin} is not a finite number")


def train(command: str, asked: args.Request, flags: Any, labels: str = "auto",
          margin: float | None = None, eval_split: float = 0.1,
          eval_inputs: list[str] | None = None, too_long: str = "truncate") -> None:
    args.check_outputs(flags)
    check_options(labels, too_long, eval_split, margin)
    split = data.read_split(command, asked.inputs, eval_inputs, check_preference,
                            preference_example, flags.skip_invalid, eval_split, flags.seed or 42)
    sources, groups, held = split.sources, split.groups, split.held
    data.note_preferences(command, sources)
    soft = labels == "soft" or (labels == "auto" and any(ex.p_chosen is not None
                                                         for examples in groups for ex in examples))
    if not soft:
        groups = data.hard_pair_groups(command, groups)
    settings = configure(flags, asked)
    base = fit.base_model(flags)
    tokenizer, fmt = fit.tokenizer_and_format(flags, base)
    max_length = settings.args.max_length
    train_groups = pair_rows(command, groups, tokenizer, fmt, max_length, soft, margin,
                             too_long, "training")
    held_groups = pair_rows(command, held, tokenizer, fmt, max_length, True, margin, too_long,
                            "held-out")
    train_rows = [row for rows in train_groups for row in rows]
    held_rows = [row for rows in held_groups for row in rows]
    if not train_rows:
        raise CaitoolError("no pairs left to train on")
    counts = split.counts([len(rows) for rows in train_groups], [len(r) for r in held_groups],
                          "pairs", "heldout_pairs")
    console.info(command, f"{len(train_rows)} training pairs, {len(held_rows)} held out "
                          f"({'soft' if soft else 'hard'} labels, {fmt} format)"
                          + (f"; by file: {data.describe(counts)}" if len(counts) > 1 else ""))

    from datasets import Dataset

    from caitool.training.reward import PairCollator, SoftLabelRewardTrainer, score_pairs

    dataset = Dataset.from_list(train_rows)

    def make_trainer():
        return SoftLabelRewardTrainer(
            model=base, args=settings.args, train_dataset=dataset,
            processing_class=tokenizer,
            data_collator=PairCollator(pad_token_id=tokenizer.pad_token_id,
                                       pad_to_multiple_of=settings.args.pad_to_multiple_of),
            peft_config=fit.peft_config(settings, "SEQ_CLS"))

    def summary(trainer, model, metrics) -> dict[str, Any]:
        report: dict[str, Any] = {}
        if held_rows and trainer.accelerator.is_main_process:
            scores = score_pairs(model, held_rows, tokenizer.pad_token_id,
                                 batch_size=settings.args.per_device_eval_batch_size)
            report = heldout_reports(scores, held_groups, split.held_names)
            metrics.write({"command": command, "step": trainer.state.global_step, **report})
            console.info(command, f"held-out pairwise accuracy: {_accuracy(report)}")
            if len(held_groups) > 1:
                console.info(command, "held-out pairwise accuracy by file: " + "; ".join(
                    f"{name}: {_accuracy(r)}" for name, r in report["heldout_by_file"].items()))
        elif not held_rows:
            console.warn(command, "no held-out pairs, so no held-out accuracy (see --eval-split)")
        return {"inputs": asked.inputs, **data.lineage(sources), "format": fmt, "pairs": len(train_rows),
                "by_file": counts, "labels": "soft" if soft else "hard", **report,
                **fit.last_values(metrics, "train_loss")}

    fit.fit(command, flags, settings, tokenizer, make_trainer, "training reward model", summary,
            examples=len(dataset), dropped="longer than --max-length",
            resume=fit.resume_checkpoint(command, flags), data_line={"by_file": counts})
