"""One function per training command: read and check the data, build the TRL config, load
the model, train, save a model directory that transformers, vLLM and TRL load as it is.

The order is deliberate: every input record is checked (and the YAML config parsed) before a
tokenizer or model is loaded, so a bad dataset costs nothing. While a trainer runs, stray
prints from the libraries go to stderr; stdout carries the metrics JSONL only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from caitool import __version__, console
from caitool.errors import CaitoolError
from caitool.training import config as configs
from caitool.training import data

CHECKPOINTS = "checkpoints"
SUMMARY = "caitool_training.json"


# -- shared steps --------------------------------------------------------------------------


class _LazyFile:
    """A metrics file opened on the first write, so that only the process writing metrics
    (the main one, under accelerate) creates or truncates it."""

    def __init__(self, path: str, append: bool):
        self.path, self.append, self.handle = path, append, None

    def write(self, text: str) -> None:
        if self.handle is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "a" if self.append else "w", encoding="utf-8")
        self.handle.write(text)

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


@contextlib.contextmanager
def _session(flags: Any) -> Iterator[TextIO]:
    """Yield the metrics stream; meanwhile send everything else printed to stdout to stderr."""
    data_out = sys.stdout
    stream = data_out if flags.metrics in ("-", None) else _LazyFile(
        flags.metrics, append=bool(flags.resume or flags.resume_from))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield stream
    finally:
        if isinstance(stream, _LazyFile):
            stream.close()


def _tokenizer_and_format(flags: Any) -> tuple[Any, str]:
    """The starting model's tokenizer and the prompt format to render the data in."""
    _quiet_libraries()
    tokenizer = _load_tokenizer(flags.model)
    return tokenizer, data.resolve_format(flags.format, tokenizer, flags.model)


def _quiet_libraries() -> None:
    import warnings

    import transformers

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if int(os.environ.get("RANK", "0") or 0) > 0:
        # Under accelerate/torchrun every process runs this; one of them reports.
        os.environ["CAITOOL_QUIET"] = "1"
    # Deprecation notices about names that TRL itself uses; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # Warnings stay (they are about the user's data and model); progress bars go, since
    # caitool draws its own.
    transformers.logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


def _load_tokenizer(path: str, what: str = "model"):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise CaitoolError(f"cannot load the {what} '{path}': {_first_line(exc)}") from None
    if tokenizer.eos_token_id is None:
        raise CaitoolError(f"the {what} '{path}' has no end-of-sequence token")
    if tokenizer.pad_token is None:
        # The saved model must carry a pad token so that it batches as it is.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _checkpoint(flags: Any, checkpoints: Path) -> str | None:
    """The checkpoint to resume from, if asked for."""
    if flags.resume_from:
        if not Path(flags.resume_from).is_dir():
            raise CaitoolError(f"--resume-from {flags.resume_from}: no such checkpoint directory")
        return flags.resume_from
    if not flags.resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        raise CaitoolError(f"--resume: no checkpoint in {checkpoints} to resume from")
    return last


def _peft(settings: configs.Settings, task_type: str):
    return configs.lora_config(settings.lora, task_type) if settings.lora is not None else None


def _report_dropped(command: str, before: int, trainer, why: str) -> None:
    after = len(trainer.train_dataset)
    if after < before:
        console.warn(command, f"{before - after} of {before} examples left out: {why}")


def _save(command: str, trainer, model, tokenizer, out: Path, flags: Any,
          summary: dict[str, Any], lora: dict[str, Any] | None = None) -> None:
    """Write the final model: whole weights, LoRA merged into them, or the adapter alone."""
    from peft import PeftModel

    accelerator = trainer.accelerator
    accelerator.wait_for_everyone()
    if isinstance(model, PeftModel):
        if accelerator.is_main_process:
            if flags.save_adapter:
                model.save_pretrained(out)
            else:
                model.merge_and_unload().save_pretrained(out)
    elif model is accelerator.unwrap_model(trainer.model):
        trainer.save_model(str(out))
    elif accelerator.is_main_process:
        model.save_pretrained(out)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(out)
        summary = {"command": command, "caitool_version": __version__, "base_model": flags.model,
                   "adapter_only": bool(flags.save_adapter), "lora": lora, **summary}
        (out / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        console.info(command, f"wrote {'adapter' if flags.save_adapter else 'model'} to {out}")
    accelerator.wait_for_everyone()


def _last(metrics, *keys: str) -> dict[str, Any]:
    """The last logged value of each key, for the summary file."""
    found: dict[str, Any] = {}
    for line in metrics.lines:
        for key in keys:
            if line.get(key) is not None:
                found[key] = line[key]
    return found


# -- train-sft -----------------------------------------------------------------------------


def train_sft(command: str, inputs: list[str], flags: Any, all_rounds: bool = False) -> None:
    configs.check_knobs(flags)
    records = data.read_records(command, inputs, data.check_sft, flags.skip_invalid)
    examples = [ex for record in records for ex in data.sft_examples(record, all_rounds)]
    out = Path(flags.output)
    from trl import SFTConfig

    # Prompt/completion rows with completion_only_loss: the loss covers the reply only, for
    # chat and raw formats alike (and without needing generation markers in the template).
    settings = configs.build(SFTConfig, flags, str(out / CHECKPOINTS),
                             {"completion_only_loss": True})
    tokenizer, fmt = _tokenizer_and_format(flags)
    console.info(command, f"{len(examples)} examples from {len(records)} records ({fmt} format)")

    from trl import SFTTrainer

    _fit_causal_lm(command, flags, out, SFTTrainer, settings, tokenizer,
                   [data.render_sft(ex, fmt) for ex in examples],
                   dropped="--max-length left no reply token in them", description="fine-tuning",
                   summary=lambda metrics, args: {
                       "inputs": inputs, "format": fmt, "examples": len(examples),
                       "all_rounds": all_rounds, **_last(metrics, "loss", "train_loss")})


def _fit_causal_lm(command: str, flags: Any, out: Path, trainer_cls: Any, settings: Any,
                   tokenizer: Any, rows: list[dict[str, Any]], dropped: str, description: str,
                   summary: Any) -> None:
    """Train a causal LM with one of TRL's trainers and save it (SFT and DPO share this)."""
    from datasets import Dataset

    from caitool.training import callbacks

    dataset = Dataset.from_list(rows)
    resume = _checkpoint(flags, out / CHECKPOINTS)
    with _session(flags) as stream:
        try:
            trainer = trainer_cls(model=flags.model, args=settings.args, train_dataset=dataset,
                                  processing_class=tokenizer, peft_config=_peft(settings, "CAUSAL_LM"))
        except OSError as exc:
            raise CaitoolError(f"cannot load the model '{flags.model}': {_first_line(exc)}") from None
        _report_dropped(command, len(dataset), trainer, dropped)
        metrics = callbacks.install(trainer, command, stream, description)
        trainer.train(resume_from_checkpoint=resume)
        model = trainer.accelerator.unwrap_model(trainer.model)
        _save(command, trainer, model, tokenizer, out, flags, summary(metrics, settings.args),
              settings.lora)


# -- train-rm ------------------------------------------------------------------------------


def _pair_rows(command: str, examples: list[data.PreferenceExample], tokenizer, fmt: str,
               max_length: int | None, soft: bool, margin: float | None,
               too_long: str, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cut = skipped = 0
    for ex in examples:
        prompt = data.prompt_ids(tokenizer, ex.prompt, fmt)
        chosen = prompt + data.response_ids(tokenizer, ex.chosen, fmt)
        rejected = prompt + data.response_ids(tokenizer, ex.rejected, fmt)
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
    if cut:
        console.warn(command, f"{cut} {name} pair(s) longer than {max_length} tokens were cut "
                              "to their last tokens (the prompt's start is lost)")
    if skipped:
        console.warn(command, f"{skipped} {name} pair(s) longer than {max_length} tokens "
                              "were left out (--too-long skip)")
    return rows


def train_rm(command: str, inputs: list[str], flags: Any, labels: str = "auto",
             margin: float | None = None, eval_split: float = 0.1,
             eval_inputs: list[str] | None = None, too_long: str = "truncate") -> None:
    configs.check_knobs(flags)
    if labels not in ("auto", "soft", "hard"):
        raise CaitoolError(f"--labels must be auto, soft or hard, not '{labels}'")
    if too_long not in ("truncate", "skip", "error"):
        raise CaitoolError(f"--too-long must be truncate, skip or error, not '{too_long}'")
    if not 0 <= eval_split < 1:
        raise CaitoolError("--eval-split must be in [0, 1)")
    records = data.read_records(command, inputs, data.check_preference, flags.skip_invalid)
    examples = [data.preference_example(r) for r in records]
    if eval_inputs:
        held = [data.preference_example(r) for r in data.read_records(
            command, eval_inputs, data.check_preference, flags.skip_invalid)]
    else:
        examples, held = data.split_heldout(examples, eval_split, flags.seed or 42)
    soft = labels == "soft" or (labels == "auto" and any(ex.p_chosen is not None for ex in examples))
    if not soft:
        examples = data.hard_pairs(command, examples)
    out = Path(flags.output)
    from trl import RewardConfig

    settings = configs.build(RewardConfig, flags, str(out / CHECKPOINTS), {})
    tokenizer, fmt = _tokenizer_and_format(flags)
    max_length = settings.args.max_length
    train_rows = _pair_rows(command, examples, tokenizer, fmt, max_length, soft, margin,
                            too_long, "training")
    held_rows = _pair_rows(command, held, tokenizer, fmt, max_length, True, margin, too_long,
                           "held-out")
    if not train_rows:
        raise CaitoolError("no pairs left to train on")
    console.info(command, f"{len(train_rows)} training pairs, {len(held_rows)} held out "
                          f"({'soft' if soft else 'hard'} labels, {fmt} format)")

    from datasets import Dataset

    from caitool.training import callbacks
    from caitool.training.reward import (
        PairCollator,
        SoftLabelRewardTrainer,
        pairwise_report,
        score_pairs,
    )

    dataset = Dataset.from_list(train_rows)
    resume = _checkpoint(flags, out / CHECKPOINTS)
    with _session(flags) as stream:
        try:
            trainer = SoftLabelRewardTrainer(
                model=flags.model, args=settings.args, train_dataset=dataset,
                processing_class=tokenizer,
                data_collator=PairCollator(pad_token_id=tokenizer.pad_token_id,
                                           pad_to_multiple_of=settings.args.pad_to_multiple_of),
                peft_config=_peft(settings, "SEQ_CLS"))
        except OSError as exc:
            raise CaitoolError(f"cannot load the model '{flags.model}': {_first_line(exc)}") from None
        _report_dropped(command, len(dataset), trainer, "longer than --max-length")
        metrics = callbacks.install(trainer, command, stream, "training reward model")
        trainer.train(resume_from_checkpoint=resume)
        model = trainer.accelerator.unwrap_model(trainer.model)
        report: dict[str, Any] = {}
        if held_rows and trainer.accelerator.is_main_process:
            scores = score_pairs(model, held_rows, tokenizer.pad_token_id,
                                 batch_size=settings.args.per_device_eval_batch_size)
            report = pairwise_report(scores, [row["p_chosen"] for row in held_rows])
            metrics.write({"command": command, "step": trainer.state.global_step, **report})
            accuracy = report["heldout_accuracy"]
            console.info(command, f"held-out pairwise accuracy: "
                                  f"{'n/a' if accuracy is None else f'{accuracy:.3f}'} on "
                                  f"{report['heldout_pairs']} pairs")
        elif not held_rows:
            console.warn(command, "no held-out pairs, so no held-out accuracy (see --eval-split)")
        _save(command, trainer, model, tokenizer, out, flags, {
            "inputs": inputs, "format": fmt, "pairs": len(train_rows),
            "labels": "soft" if soft else "hard", **report, **_last(metrics, "train_loss")},
            settings.lora)


# -- train-dpo -----------------------------------------------------------------------------


def train_dpo(command: str, inputs: list[str], flags: Any, beta: float | None = None) -> None:
    configs.check_knobs(flags)
    records = data.read_records(command, inputs, data.check_preference, flags.skip_invalid)
    examples = data.hard_pairs(command, [data.preference_example(r) for r in records])
    out = Path(flags.output)
    from trl import DPOConfig

    settings = configs.build(DPOConfig, flags, str(out / CHECKPOINTS), {},
                             extra={"beta": beta} if beta is not None else None)
    tokenizer, fmt = _tokenizer_and_format(flags)
    console.info(command, f"{len(examples)} pairs ({fmt} format)")

    from trl import DPOTrainer

    _fit_causal_lm(command, flags, out, DPOTrainer, settings, tokenizer,
                   [data.render_preference(ex, fmt) for ex in examples],
                   dropped="their prompt alone fills --max-length",
                   description="preference optimisation",
                   summary=lambda metrics, args: {
                       "inputs": inputs, "format": fmt, "pairs": len(examples), "beta": args.beta,
                       **_last(metrics, "rewards/margins", "train_loss")})
