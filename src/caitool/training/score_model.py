"""train-rm --target FIELD: a score model, a one-output sequence classifier that predicts a
number people gave each reply (the paper's absolute harmfulness model, learnt from the
red-team data's 0-4 ratings), instead of a preference.

Each reply is tokenized as train-rm tokenizes answers (the conversation as the policy's
prompt, the reply, the end-of-sequence token), so ``caitool eval --score-model`` can score a
system's answers exactly as the model saw its training data. The model is transformers'
regression classifier (``problem_type="regression"``: mean squared error) trained by the
plain ``transformers.Trainer`` on the standardised target; the mean and spread go into
``caitool_training.json``, from which scores are turned back into the field's units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from caitool import console
from caitool.errors import CaitoolError
from caitool.render import policy_prompt_ids, reply_ids
from caitool.training import args, data, fit
from caitool.training.rm import configure  # train-rm's RewardConfig, flags and all
from caitool.training.score_data import ScoredExample, check_scored, scored_example, standardise


def example_rows(command: str, groups: list[list[ScoredExample]], tokenizer, fmt: str,
                 max_length: int | None, too_long: str, scale: dict[str, Any],
                 name: str) -> list[list[dict[str, Any]]]:
    """Tokenized examples of each group (one per input file), the target standardised;
    over-long ones cut to their end (where the score is read), skipped, or an error."""
    result: list[list[dict[str, Any]]] = []
    cut = skipped = 0
    for examples in groups:
        rows = []
        for ex in examples:
            ids = policy_prompt_ids(tokenizer, ex.prompt, fmt) + reply_ids(tokenizer, ex.response, fmt)
            if max_length is not None and len(ids) > max_length:
                if too_long == "error":
                    raise CaitoolError(f"a {name} example is {len(ids)} tokens long, over "
                                       f"--max-length {max_length} (raise it, or use --too-long "
                                       "truncate/skip)")
                if too_long == "skip":
                    skipped += 1
                    continue
                ids, _ = data.keep_end(ids, max_length)
                cut += 1
            rows.append({"input_ids": ids, "labels": (ex.target - scale["mean"]) / scale["std"],
                         "target": ex.target})
        result.append(rows)
    if cut:
        console.warn(command, f"{cut} {name} example(s) longer than {max_length} tokens were cut "
                              "to their last tokens (the prompt's start is lost)")
    if skipped:
        console.warn(command, f"{skipped} {name} example(s) longer than {max_length} tokens "
                              "were left out (--too-long skip)")
    return result


@dataclass
class ScoreCollator:
    """Right-padded ids and their float targets, as transformers' regression loss takes them."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from trl.trainer.utils import pad

        ids = [torch.tensor(e["input_ids"], dtype=torch.long) for e in examples]
        return {
            "input_ids": pad(ids, padding_value=self.pad_token_id,
                             pad_to_multiple_of=self.pad_to_multiple_of),
            "attention_mask": pad([torch.ones_like(i) for i in ids], padding_value=0,
                                  pad_to_multiple_of=self.pad_to_multiple_of),
            "labels": torch.tensor([e["labels"] for e in examples], dtype=torch.float),
        }


def error_report(predicted: list[float], targets: list[float], baseline: float) -> dict[str, Any]:
    """Held-out error in the target's units, beside the error of always predicting the
    training mean: a model that learnt nothing does no better than that."""
    n = len(targets)
    if not n:
        return {"heldout_examples": 0, "heldout_mse": None, "heldout_mae": None,
                "heldout_baseline_mse": None, "heldout_baseline_mae": None}
    return {
        "heldout_examples": n,
        "heldout_mse": sum((p - t) ** 2 for p, t in zip(predicted, targets)) / n,
        "heldout_mae": sum(abs(p - t) for p, t in zip(predicted, targets)) / n,
        "heldout_baseline_mse": sum((baseline - t) ** 2 for t in targets) / n,
        "heldout_baseline_mae": sum(abs(baseline - t) for t in targets) / n,
    }


def _error(report: dict[str, Any]) -> str:
    if report["heldout_mse"] is None:
        return f"n/a on {report['heldout_examples']} examples"
    return (f"MSE {report['heldout_mse']:.3f} (the training mean: "
            f"{report['heldout_baseline_mse']:.3f}), MAE {report['heldout_mae']:.3f} on "
            f"{report['heldout_examples']} examples")


def load_model(path: str, settings):
    """The starting model with a one-output regression head, loaded as TRL's reward trainer
    loads its model (model_init_kwargs, float32 by default), then LoRA and dropout off."""
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl.trainer.reward_trainer import suppress_seqcls_warning
    from trl.trainer.utils import create_model_from_path, disable_dropout_in_model

    config = settings.args
    options = dict(config.model_init_kwargs or {})
    if config.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
        options["device_map"] = None
    options.setdefault("trust_remote_code", config.trust_remote_code)
    # The new score head is random: seeded, so that a run can be repeated.
    set_seed(config.seed)
    with suppress_seqcls_warning():
        model = create_model_from_path(path, AutoModelForSequenceClassification, num_labels=1,
                                       problem_type="regression", **options)
    lora = fit.peft_config(settings, "SEQ_CLS")
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    if config.disable_dropout:
        disable_dropout_in_model(model)
    return model


def train(command: str, asked: args.Request, flags: Any, target: str, eval_split: float = 0.1,
          eval_inputs: list[str] | None = None, too_long: str = "truncate") -> None:
    from caitool.training import rm

    args.check_outputs(flags)
    rm.check_options("auto", too_long, eval_split, target=target)
    check = check_scored(target)
    split = data.read_split(command, asked.inputs, eval_inputs, check,
                            lambda record: scored_example(record, target), flags.skip_invalid,
                            eval_split, flags.seed or 42)
    sources, groups, held = split.sources, split.groups, split.held
    scale = standardise([ex for examples in groups for ex in examples])
    if not scale["std"] > 0:
        raise CaitoolError(f"every training example has {target} = {scale['mean']:g}: "
                           "there is nothing to learn")
    settings = configure(flags, asked)
    base = fit.base_model(flags)
    tokenizer, fmt = fit.tokenizer_and_format(flags, base)
    max_length = settings.args.max_length
    train_groups = example_rows(command, groups, tokenizer, fmt, max_length, too_long, scale,
                                "training")
    held_groups = example_rows(command, held, tokenizer, fmt, max_length, too_long, scale,
                               "held-out")
    train_rows = [row for rows in train_groups for row in rows]
    held_rows = [row for rows in held_groups for row in rows]
    if not train_rows:
        raise CaitoolError("no examples left to train on")
    counts = split.counts([len(rows) for rows in train_groups], [len(r) for r in held_groups],
                          "examples", "heldout")
    console.info(command, f"{len(train_rows)} training examples, {len(held_rows)} held out "
                          f"(target {target}: mean {scale['mean']:.3g}, std {scale['std']:.3g}; "
                          f"{fmt} format)"
                          + (f"; by file: {data.describe(counts)}" if len(counts) > 1 else ""))

    from datasets import Dataset
    from transformers import Trainer

    from caitool.training.reward import score_sequences

    dataset = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]}
                                 for r in train_rows])

    def make_trainer():
        model = load_model(base, settings)
        # The classifier reads its score at the last token that is not padding.
        model.config.pad_token_id = tokenizer.pad_token_id
        return Trainer(model=model, args=settings.args,
                       train_dataset=dataset, processing_class=tokenizer,
                       data_collator=ScoreCollator(tokenizer.pad_token_id,
                                                   settings.args.pad_to_multiple_of))

    def held_out(model, rows: list[dict[str, Any]]) -> dict[str, Any]:
        scores = score_sequences(model, [r["input_ids"] for r in rows], tokenizer.pad_token_id,
                                 batch_size=settings.args.per_device_eval_batch_size)
        predicted = [scale["mean"] + scale["std"] * s for s in scores]
        return error_report(predicted, [r["target"] for r in rows], scale["mean"])

    def summary(trainer, model, metrics) -> dict[str, Any]:
        report: dict[str, Any] = {}
        if held_rows and trainer.accelerator.is_main_process:
            report = held_out(model, held_rows)
            if len(held_groups) > 1:
                report["heldout_by_file"] = {
                    name: held_out(model, rows) if rows else error_report([], [], 0.0)
                    for name, rows in zip(data.by_file(split.held_names), held_groups)}
            metrics.write({"command": command, "step": trainer.state.global_step, **report})
            console.info(command, f"held-out error: {_error(report)}")
        elif not held_rows:
            console.warn(command, "no held-out examples, so no held-out error (see --eval-split)")
        return {"inputs": asked.inputs, **data.lineage(sources), "format": fmt, "objective": "regression",
                "target": target, "normalization": scale, "examples": len(train_rows),
                "by_file": counts, **report, **fit.last_values(metrics, "train_loss")}

    fit.fit(command, flags, settings, tokenizer, make_trainer, "training score model", summary,
            examples=len(dataset), dropped="longer than --max-length",
            resume=fit.resume_checkpoint(command, flags), data_line={"by_file": counts})
