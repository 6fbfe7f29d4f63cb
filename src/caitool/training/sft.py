"""train-sft: supervised fine-tuning on revised responses (the paper's SL-CAI stage).

Every example is a TRL prompt/completion row trained with ``completion_only_loss``: the
loss covers the reply only, for chat and raw formats alike (and without needing generation
markers in the chat template).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caitool import console
from caitool.render import policy_prompt_ids, prompt_completion, reply_ids
from caitool.schema import check_sft, sft_examples
from caitool.training import args, data, fit

OWNED: dict[str, str] = {}


def config_class() -> type:
    from trl import SFTConfig

    return SFTConfig


def configure(flags: Any, asked: args.Request) -> args.Settings:
    return args.build(config_class(), flags, asked, str(Path(flags.output) / fit.CHECKPOINTS),
                      defaults={"completion_only_loss": True},
                      shortcuts=args.shortcut_values(flags))


def train(command: str, asked: args.Request, flags: Any, all_rounds: bool = False) -> None:
    args.check_outputs(flags)
    sources = data.read_sources(command, asked.inputs, check_sft, flags.skip_invalid)
    groups = [[ex for record in source.records for ex in sft_examples(record, all_rounds)]
              for source in sources]
    examples = [ex for group in groups for ex in group]
    records = sum(len(source.records) for source in sources)
    counts = data.by_file([source.name for source in sources],
                          examples=[len(group) for group in groups])
    settings = configure(flags, asked)
    base = fit.base_model(flags)
    tokenizer, fmt = fit.tokenizer_and_format(flags, base)
    console.info(command, f"{len(examples)} examples from {records} records ({fmt} format)"
                          + (f"; by file: {data.describe(counts)}" if len(counts) > 1 else ""))
    warn_cut(command, tokenizer, examples, fmt, settings.args.max_length)

    from datasets import Dataset
    from trl import SFTTrainer

    dataset = Dataset.from_list([prompt_completion(ex.prompt, ex.response, fmt) for ex in examples])
    fit.fit(
        command, flags, settings, tokenizer,
        lambda: SFTTrainer(model=base, args=settings.args, train_dataset=dataset,
                           processing_class=tokenizer,
                           peft_config=fit.peft_config(settings, "CAUSAL_LM")),
        "fine-tuning",
        lambda trainer, model, metrics: {
            "inputs": asked.inputs, **data.lineage(sources), "format": fmt, "examples": len(examples),
            "by_file": counts,
            "all_rounds": all_rounds, **fit.last_values(metrics, "loss", "train_loss")},
        examples=len(dataset), dropped="--max-length left no reply token in them",
        resume=fit.resume_checkpoint(command, flags), data_line={"by_file": counts})


def warn_cut(command: str, tokenizer: Any, examples: list, fmt: str,
             max_length: int | None) -> None:
    """TRL cuts an example longer than max_length to its first tokens without a word, so the
    end of its reply is never trained on: count them, as train-rm counts its cut pairs."""
    if max_length is None:
        return
    longer = 0
    for ex in examples:
        prompt = len(policy_prompt_ids(tokenizer, ex.prompt, fmt))
        # One whose prompt alone fills max_length keeps no reply: left out, and said so later.
        longer += prompt < max_length < prompt + len(reply_ids(tokenizer, ex.response, fmt))
    if longer:
        console.warn(command, f"{longer} of {len(examples)} example(s) longer than --max-length "
                              f"{max_length} tokens were cut to their first {max_length} (the end "
                              "of the reply is not trained on); raise --max-length to keep them")
