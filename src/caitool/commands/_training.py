"""Flags the training commands share, and the way every TRL config field becomes a flag.

A training command takes its own flags (below) and, besides, any field of its TRL config
class as ``--FIELD VALUE``: click lets the options it does not know through (with the input
files, in order), and :mod:`caitool.training.args` parses them with TRL's own config class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from caitool.commands._flags import flag

# A training command's click settings (cli.py reads a command module's CONTEXT_SETTINGS):
# options click does not know go through to the TRL config parser.
EXTRA_FLAGS = {"ignore_unknown_options": True, "allow_extra_args": True}

Inputs = Annotated[list[str], typer.Argument(
    help="JSONL files (- for stdin); several are mixed into one training set, each file's "
         "count reported. Any field of the TRL config may follow as a flag: "
         "`--lr_scheduler_type cosine` (see --help-trl).",
    show_default=False)]


@dataclass
class TrainFlags:
    """Flags every training command shares. A knob left unset (None) keeps the value from
    --config, or else the TRL config's own default."""

    model: str | None = flag(None, "-m", "--model",
                             help="Model to start from: a local directory, a hub id, a GGUF file or a "
                                  "built-in name (default: the built-in SmolLM2-135M-Instruct).")
    output: str | None = flag(None, "-o", "--output",
                              help="Directory to write the trained model (and checkpoints/) to.")
    config: str | None = flag(None, "--config",
                              help="YAML file of TRL config fields, TRL's names (flags win over it); a "
                                   "'lora' mapping holds LoRA settings.")
    help_trl: bool = flag(False, "--help-trl",
                          help="List the TRL config's fields (each a flag, `--FIELD VALUE`, and a "
                               "--config key) with TRL's help, and exit.")
    epochs: float | None = flag(None, "--epochs", help="Passes over the data (TRL's num_train_epochs).")
    max_steps: int | None = flag(None, "--max-steps",
                                 help="Stop after this many optimizer steps (PPO: rollout batches); overrides "
                                      "--epochs.")
    learning_rate: float | None = flag(None, "--learning-rate", help="Peak learning rate.")
    batch_size: int | None = flag(None, "--batch-size", help="Examples per device per step.")
    gradient_accumulation_steps: int | None = flag(None, "--gradient-accumulation-steps",
                                                   help="Steps to accumulate before each optimizer update.")
    max_length: int | None = flag(None, "--max-length", help="Most tokens per example (RL trainers: per prompt).")
    format: str = flag("auto", "--format",
                       help="Prompt format: chat (the model's chat template), raw (Human:/Assistant: "
                            "transcript), or auto.")
    seed: int | None = flag(None, "--seed", help="Seed for initialisation, shuffling and sampling.")
    logging_steps: float | None = flag(None, "--logging-steps", help="Write a metrics line every N steps.")
    save_steps: float | None = flag(None, "--save-steps", help="Save a checkpoint to OUTPUT/checkpoints every N steps.")
    snapshots: int = flag(0, "--snapshots",
                          help="Also save the model at N evenly spaced steps, each a model directory "
                               "(OUTPUT/snapshots/step-K) to generate from and evaluate: RL's "
                               "progress, step by step.")
    report_to: str | None = flag(None, "--report-to",
                                 help="Also report to these integrations, comma-separated, as TRL's "
                                      "report_to: tensorboard, wandb, mlflow, all ... (default none). "
                                      "The metrics JSONL is always written.")
    metrics: str = flag("-", "--metrics", help="Where to write metrics as JSONL: a file, or - for stdout.")
    resume: bool = flag(False, "--resume", help="Continue from the latest checkpoint in OUTPUT/checkpoints.")
    resume_from: str | None = flag(None, "--resume-from", help="Continue from this checkpoint directory.")
    skip_invalid: bool = flag(False, "--skip-invalid", help="Report and skip bad input lines instead of stopping.")
    lora: bool = flag(False, "--lora", help="Train a LoRA adapter (peft) instead of all weights.")
    lora_r: int | None = flag(None, "--lora-r", help="LoRA rank (default 16).")
    lora_alpha: int | None = flag(None, "--lora-alpha", help="LoRA alpha (default 32).")
    save_adapter: bool = flag(False, "--save-adapter",
                              help="With --lora: save the adapter alone instead of merging it into the weights.")


def run(trainer: Any, command: str, arguments: list[str] | None, flags: TrainFlags,
        **options: Any) -> None:
    """Train with ``trainer`` (a :mod:`caitool.training` module), or print its TRL help."""
    if flags.help_trl:
        from caitool.training.args import trl_help

        typer.echo(trl_help(trainer.config_class(), command, trainer.OWNED), nl=False)
        return
    trainer.train(command, arguments or [], flags, **options)
