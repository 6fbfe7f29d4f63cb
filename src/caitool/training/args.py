"""TRL config objects from caitool's defaults, a YAML file and command-line flags.

Every field of the command's TRL config class (``SFTConfig``, ``RewardConfig``, ``DPOConfig``,
``PPOConfig``, each a ``transformers.TrainingArguments``) can be set twice over, under TRL's
own name: as a key of the ``--config`` YAML file, and as a flag (``--warmup_steps 10``,
``--warmup-steps=10``). The flags are parsed by transformers' ``HfArgumentParser`` built
from the config class itself, so types, choices and help texts are TRL's and nothing here
re-declares a field. caitool's own training flags (``--epochs``, ``--batch-size`` ...) are
shortcuts onto those fields.

Precedence, lowest first: TRL's defaults, caitool's defaults, the command's defaults, the
YAML file, the shortcut flags, the TRL-named flags. Fields caitool fills from its own flags
(``output_dir`` from ``-o``, PPO's model paths) are refused in the file and as flags. One
extra YAML key, ``lora``, is a mapping of ``peft.LoraConfig`` fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError

# caitool flag (a TrainFlags attribute) -> the TRL fields it sets.
SHORTCUTS = {
    "epochs": ("num_train_epochs",),
    "max_steps": ("max_steps",),
    "learning_rate": ("learning_rate",),
    "batch_size": ("per_device_train_batch_size", "per_device_eval_batch_size"),
    "gradient_accumulation_steps": ("gradient_accumulation_steps",),
    "max_length": ("max_length",),
    "seed": ("seed",),
    "logging_steps": ("logging_steps",),
    "save_steps": ("save_steps",),
    "report_to": ("report_to",),
}

LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
# Fields every command fills from its own flags.
OWNED = {"output_dir": "-o/--output", "resume_from_checkpoint": "--resume-from"}
TRUTHY = ("yes", "true", "t", "y", "1", "no", "false", "f", "n", "0")


class FlagError(CaitoolError):
    """A flag the command cannot take: a usage error, like click's own (exit status 2)."""

    exit_code = 2


def did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_names(config_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls) if f.init]


# -- the YAML file ---------------------------------------------------------------------------


def load_yaml(path: str) -> dict[str, Any]:
    import yaml

    from caitool.io import yaml_safe

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaitoolError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaitoolError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        data = yaml_safe.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaitoolError(f"{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CaitoolError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


# -- TRL-named flags -------------------------------------------------------------------------


def trl_parser(config_cls: type, **kwargs: Any):
    """TRL's config class as an argparse parser whose errors are one-line FlagErrors."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message: str):  # argparse would print its usage and exit
            raise FlagError(message.removeprefix("argument "))

    return Parser(config_cls, allow_abbrev=False, add_help=False, **kwargs)


def trl_help(config_cls: type, command: str, owned: dict[str, str] | None = None) -> str:
    """The config class's own help: every field, TRL's names, types, defaults and texts."""

    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    name = config_cls.__name__
    owned = {**OWNED, **(owned or {})}
    filled = "\n".join(f"  {field:<24}{flag}" for field, flag in owned.items())
    parser = trl_parser(
        config_cls, prog=f"caitool {command}", formatter_class=Formatter,
        usage=f"caitool {command} [INPUT...] [caitool flags] [--FIELD VALUE ...]",
        description=f"Every field of TRL's {name} is a flag (--FIELD VALUE, --FIELD=VALUE, or\n"
                    "with hyphens) and a key of the --config YAML file. Flags win over the file;\n"
                    "TRL-named flags win over caitool's own (--epochs, --batch-size ...). Put\n"
                    "input files before a flag that takes several values.",
        epilog=f"Set by caitool's own flags, not here:\n{filled}")
    for action in parser._actions:
        if action.dest in owned:
            action.help = argparse.SUPPRESS
    parser._optionals.title = f"{name} fields"
    return parser.format_help()


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-"


def parse_flags(config_cls: type, arguments: list[str],
                own_flags: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The TRL fields set as flags among ``arguments``, and the rest (the input files).

    ``own_flags``: caitool's flag names, for suggestions when a flag is unknown."""
    from transformers.hf_argparser import string_to_bool

    parser = trl_parser(config_cls)
    by_option = {}
    for action in parser._actions:
        # Only the fields given are wanted, not every default.
        action.default = argparse.SUPPRESS
        by_option.update(dict.fromkeys(action.option_strings, action))
    tokens: list[str] = []
    for i, token in enumerate(arguments):
        action = by_option.get(token)
        following = arguments[i + 1] if i + 1 < len(arguments) else None
        if action is not None and action.type is string_to_bool and (
                following is None or following.lower() not in TRUTHY):
            # A bare boolean flag means true, and must not swallow an input file after it.
            token += "=true"
        tokens.append(token)
    namespace, rest = parser.parse_known_args(tokens)
    for token in rest:
        if _is_option(token):
            name = token.split("=", 1)[0]
            known = [spelling for n in field_names(config_cls)
                     for spelling in (f"--{n}", f"--{n.replace('_', '-')}")]
            known += [f"--{n.replace('_', '-')}" for n in own_flags]
            raise FlagError(f"no such option: {name}: not a caitool flag nor a field of TRL's "
                            f"{config_cls.__name__}{did_you_mean(name, known)}")
    return vars(namespace), rest


# -- building the config ---------------------------------------------------------------------


def device_defaults() -> dict[str, Any]:
    """TRL's defaults (bf16, gradient checkpointing) suit a GPU; on a CPU they fail or only
    slow training down, so there it trains in full precision without checkpointing."""
    import torch

    if torch.cuda.is_available():
        gpu = {"activation_checkpointing": True}
        return gpu if torch.cuda.is_bf16_supported() else {**gpu, "bf16": False}
    cpu = {"bf16": False, "activation_checkpointing": False, "dataloader_pin_memory": False}
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        # Lets `accelerate launch --multi_gpu` (torchrun) on a machine without GPUs train
        # with several CPU processes instead of several unconnected single ones.
        cpu["use_cpu"] = True
    return cpu


@dataclasses.dataclass
class Request:
    """What the user asked for: input files, the YAML file's fields, the TRL-named flags."""

    inputs: list[str]
    file: dict[str, Any]
    flags: dict[str, Any]
    lora: dict[str, Any] | None

    def sets(self, name: str) -> bool:
        return name in self.file or name in self.flags


def request(config_class: Callable[[], type], flags: Any, arguments: list[str],
            owned: dict[str, str] | None = None) -> Request:
    """Read ``--config`` and the TRL-named flags among ``arguments``; check every name.

    ``config_class`` is only called (importing TRL, seconds) when there is something to
    check, so that a run with plain input files reports bad data before it waits on that.
    """
    owned = {**OWNED, **(owned or {})}
    given: dict[str, Any] = {}
    inputs = list(arguments)
    if any(map(_is_option, arguments)):
        own_flags = [f.name for f in dataclasses.fields(flags)] \
            if dataclasses.is_dataclass(flags) else list(SHORTCUTS)
        given, inputs = parse_flags(config_class(), arguments, own_flags)
    for name in given:
        if name in owned:
            raise FlagError(f"--{name}: set it with {owned[name]}")
    file_values = load_yaml(flags.config) if flags.config else {}
    lora = None
    if "lora" in file_values:
        lora = file_values.pop("lora") or {}
        if not isinstance(lora, dict):
            raise CaitoolError(f"{flags.config}: 'lora' must be a mapping of LoRA settings")
    for key in file_values:
        if key in owned:
            raise CaitoolError(f"{flags.config}: set '{key}' with {owned[key]}, not in the file")
    if file_values:
        config_cls = config_class()
        names = field_names(config_cls)
        for key in file_values:
            if key not in names:
                raise CaitoolError(f"{flags.config}: '{key}' is not a {config_cls.__name__} "
                                   f"field{did_you_mean(key, names)}")
    return Request(inputs or ["-"], file_values, given, lora)


def shortcut_values(flags: Any, shortcuts: tuple[str, ...] = tuple(SHORTCUTS)) -> dict[str, Any]:
    """The TRL fields that caitool's shortcut flags (those given) set."""
    values: dict[str, Any] = {}
    for flag in shortcuts:
        value = getattr(flags, flag, None)
        if value is not None:
            values.update(dict.fromkeys(SHORTCUTS[flag], value))
    return values


def _reporting(value: Any) -> Any:
    """``--report-to tensorboard,wandb`` as the list TrainingArguments takes."""
    if isinstance(value, str) and "," in value:
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def check_reporting(report_to: list[str]) -> None:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    known = sorted(INTEGRATION_TO_CALLBACK)
    for name in report_to:
        if name not in INTEGRATION_TO_CALLBACK:
            raise CaitoolError(f"--report-to: '{name}' is not one of none, all, "
                               f"{', '.join(known)}{did_you_mean(name, known)}")


@dataclasses.dataclass
class Settings:
    """A built TRL config plus what is not a TRL config field."""

    args: Any
    lora: dict[str, Any] | None
    values: dict[str, Any]
    inputs: list[str]


def build(config_cls: type, flags: Any, asked: Request, output_dir: str,
          defaults: dict[str, Any] | None = None, shortcuts: dict[str, Any] | None = None,
          filled: dict[str, Any] | None = None) -> Settings:
    """``config_cls`` from defaults < ``defaults`` < file < ``shortcuts`` < flags < ``filled``.

    ``shortcuts`` are the values caitool's own flags set; ``filled`` the fields the command
    fills itself (which :func:`request` refuses from the user).
    """
    names = field_names(config_cls)
    base = {"report_to": "none", "save_strategy": "steps", **device_defaults()}
    values = {k: v for k, v in base.items() if k in names}
    values.update(defaults or {})
    values.update(asked.file)
    values.update(shortcuts or {})
    values.update(asked.flags)
    if asked.sets("gradient_checkpointing") and not asked.sets("activation_checkpointing"):
        # transformers renamed the field; the old name only counts where the new one is unset.
        values["activation_checkpointing"] = values.pop("gradient_checkpointing")
    values["report_to"] = _reporting(values.get("report_to"))
    values.update(filled or {})
    values["output_dir"] = output_dir
    try:
        args = config_cls(**values)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaitoolError(f"invalid training configuration: {first}") from None
    check_reporting(args.report_to)

    lora = asked.lora
    if flags.lora or lora is not None or flags.lora_r is not None or flags.lora_alpha is not None:
        lora = {**LORA_DEFAULTS, **(lora or {})}
        if flags.lora_r is not None:
            lora["r"] = flags.lora_r
        if flags.lora_alpha is not None:
            lora["lora_alpha"] = flags.lora_alpha
    elif flags.save_adapter:
        raise CaitoolError("--save-adapter needs --lora")
    return Settings(args, lora, values, asked.inputs)


def check_knobs(flags: Any) -> None:
    """Catch impossible flag values before anything heavy happens."""
    for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "max_length"):
        value = getattr(flags, name, None)
        if value is not None and value < 1:
            raise CaitoolError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("epochs", "learning_rate"):
        value = getattr(flags, name, None)
        if value is not None and value <= 0:
            raise CaitoolError(f"--{name.replace('_', '-')} must be positive")
    if not flags.output:
        raise CaitoolError("no output directory given: pass -o/--output DIR")
    from caitool.training import outputs

    outputs.check(flags)


def lora_config(settings: dict[str, Any], task_type: str):
    from peft import LoraConfig

    known = [f.name for f in dataclasses.fields(LoraConfig)]
    for key in settings:
        if key not in known:
            raise CaitoolError(f"lora: '{key}' is not a LoraConfig field{did_you_mean(key, known)}")
    try:
        return LoraConfig(task_type=task_type, **settings)
    except (TypeError, ValueError) as exc:
        raise CaitoolError(f"invalid LoRA settings: {exc}") from None
