"""train-dpo: direct preference optimisation with TRL's DPOTrainer, from preference records.

Labels are hard: the preferred answer is the one ``p_chosen`` favours, and ties are left
out (and counted). The starting model is the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caitool import console
from caitool.render import preference_row
from caitool.schema import check_preference, preference_example
from caitool.training import args, data, fit

OWNED: dict[str, str] = {}


def config_class() -> type:
    from trl import DPOConfig

    return DPOConfig


def configure(flags: Any, asked: args.Request, beta: float | None = None) -> args.Settings:
    shortcuts = args.shortcut_values(flags)
    if beta is not None:
        shortcuts["beta"] = beta
    return args.build(config_class(), flags, asked, str(Path(flags.output) / fit.CHECKPOINTS),
                      shortcuts=shortcuts)


def train(command: str, asked: args.Request, flags: Any, beta: float | None = None) -> None:
    args.check_outputs(flags)
    sources = data.read_sources(command, asked.inputs, check_preference, flags.skip_invalid)
    data.note_preferences(command, sources)
    groups = data.hard_pair_groups(command, [[preference_example(r) for r in source.records]
                                             for source in sources])
    examples = [ex for group in groups for ex in group]
    counts = data.by_file([source.name for source in sources], pairs=[len(g) for g in groups])
    settings = configure(flags, asked, beta)
    base = fit.base_model(flags)
    tokenizer, fmt = fit.tokenizer_and_format(flags, base)
    console.info(command, f"{len(examples)} pairs ({fmt} format)"
                          + (f"; by file: {data.describe(counts)}" if len(counts) > 1 else ""))

    from datasets import Dataset
    from trl import DPOTrainer

    dataset = Dataset.from_list([preference_row(ex.prompt, ex.chosen, ex.rejected, fmt)
                                 for ex in examples])
    fit.fit(
        command, flags, settings, tokenizer,
        lambda: DPOTrainer(model=base, args=settings.args, train_dataset=dataset,
                           processing_class=tokenizer,
                           peft_config=fit.peft_config(settings, "CAUSAL_LM")),
        "preference optimisation",
        lambda trainer, model, metrics: {
            "inputs": asked.inputs, **data.lineage(sources), "format": fmt, "pairs": len(examples),
            "by_file": counts,
            "beta": settings.args.beta,
            **fit.last_values(metrics, "rewards/margins", "train_loss")},
        examples=len(dataset), dropped="their prompt alone fills --max-length",
        resume=fit.resume_checkpoint(command, flags), data_line={"by_file": counts})
