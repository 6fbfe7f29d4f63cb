"""train-sft: supervised fine-tuning on revised responses (the paper's SL-CAI stage).

Every example is a TRL prompt/completion row trained with ``completion_only_loss``: the
loss covers the reply only, for chat and raw formats alike (and without needing generation
markers in the chat template).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caitool import console
from caitool.render import prompt_completion
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


def train(command: str, arguments: list[str], flags: Any, all_rounds: bool = False) -> None:
    args.check_knobs(flags)
    asked = args.request(config_class, flags, arguments, OWNED)
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
