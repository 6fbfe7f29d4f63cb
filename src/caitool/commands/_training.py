"""What the training commands share: their flags, and one parse of them with the TRL config.

A training command's flags are dataclasses (:class:`TrainFlags` and the command's own).
click shows them in ``--help`` and completes them; :class:`TrainingCommand` hands the whole
command line to :func:`caitool.training.args.parse`, which parses it once, together with
every field of the command's TRL config class (``--FIELD VALUE``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from caitool.commands._flags import Command, flag, group_options

Inputs = Annotated[list[str], typer.Argument(
    help="JSONL files (- for stdin); several are mixed into one training set, each file's "
         "count reported. Any field of the TRL config may follow as a flag: "
         "`--lr_scheduler_type cosine` (see --help-trl).",
    show_default=False)]
# The command line reaches TrainingCommand whole; click's own parse runs only for --help.
CONTEXT_SETTINGS = {"ignore_unknown_options": True, "allow_extra_args": True}


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
    lora_dropout: float | None = flag(None, "--lora-dropout", help="LoRA dropout (default 0.05).")
    save_adapter: bool = flag(False, "--save-adapter",
                              help="With --lora: save the adapter alone instead of merging it into the weights.")


def trl_help(config_cls: type, command: str, owned: dict[str, str] | None = None) -> str:
    """The config class's own help (--help-trl): every field, TRL's names, types, defaults
    and texts."""
    import argparse

    from caitool.training import args

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    name = config_cls.__name__
    owned = {**args.OWNED, **(owned or {})}
    filled = "\n".join(f"  {field:<24}{setter}" for field, setter in owned.items())
    parser = args.trl_parser(
        config_cls, prog=f"caitool {command}", formatter_class=Formatter,
        usage=f"caitool {command} [INPUT...] [caitool flags] [--FIELD VALUE ...]",
        description=f"Every field of TRL's {name} is a flag (--FIELD VALUE, --FIELD=VALUE, or\n"
                    "with hyphens) and a key of the --config YAML file. Flags win over the file;\n"
                    "TRL-named flags win over caitool's own (--epochs, --batch-size ...). A field\n"
                    "named like a caitool flag (--max-steps, --seed ...) is that flag. Put input\n"
                    "files before a flag that takes several values.",
        epilog=f"Set by caitool's own flags, not here:\n{filled}")
    for action in parser._actions:
        if action.dest in owned:
            action.help = argparse.SUPPRESS
    parser._optionals.title = f"{name} fields"
    return parser.format_help()


class TrainingCommand(Command):
    """A training command: click documents its flags, training.args parses them."""

    trainer: str  # the caitool.training module with config_class and OWNED
    groups: tuple[type, ...]
    body: Callable[..., None]

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if any(arg in ctx.help_option_names for arg in args):
            return super().parse_args(ctx, args)  # prints the help and exits
        ctx.args = list(args)
        return ctx.args

    def invoke(self, ctx) -> None:
        from caitool.training import args, outputs

        trainer = importlib.import_module(self.trainer)
        groups, asked = args.parse(self.groups, trainer.config_class, ctx.args, trainer.OWNED)
        train = groups[0]
        if train.help_trl:
            typer.echo(trl_help(trainer.config_class(), self.name, trainer.OWNED), nl=False)
            return
        outputs.check_inputs(train, asked.inputs)
        self.body(*groups, asked)


def training(trainer: str, *groups: type):
    """Make ``body(train, *groups, asked)`` a training command: its help is its docstring,
    its flags TrainFlags' and ``groups``' fields, and those of ``trainer``'s TRL config."""
    groups = (TrainFlags, *groups)

    def decorate(body: Callable[..., None]):
        def documented(**flags: Any) -> None:  # never called: TrainingCommand runs ``body``
            raise AssertionError(flags)

        params = [inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=None, annotation=Inputs)]
        # The command's own flags first in its help, then those all training commands share.
        params += [param for group in (*groups[1:], TrainFlags) for param in group_options(group)]
        documented.__signature__ = inspect.Signature(params)
        documented.__annotations__ = {p.name: p.annotation for p in params}
        documented.__doc__ = body.__doc__
        documented.context_settings = CONTEXT_SETTINGS
        documented.command_class = type("Command", (TrainingCommand,), {
            "trainer": trainer, "groups": groups, "body": staticmethod(body)})
        return documented

    return decorate
