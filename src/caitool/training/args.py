"""A training command's flags, parsed once: caitool's flag groups and TRL's config class.

One transformers ``HfArgumentParser`` is built from the command's flag dataclasses (``-m``,
``-o``, ``--epochs`` ..., commands/_training.py) and its TRL config class (``SFTConfig``,
``DPOConfig`` ..., each a ``transformers.TrainingArguments``), as TRL's own scripts build
theirs: types, choices and help texts are TRL's, and no field is declared twice. A field is
``--FIELD VALUE``, ``--FIELD=VALUE`` or spelt with hyphens; a TRL field with the name of a
caitool flag (``max_steps``, ``seed`` ...) is that flag. Every TRL field is also a key of the
``--config`` YAML file. TRL is imported (seconds) only where the command line or a
``--config`` names its fields, so that bad data is reported before that wait.

Precedence, lowest first: TRL's defaults, caitool's defaults, the command's defaults, the
YAML file, caitool's flags, the TRL-named flags. Fields caitool fills from its own flags
(``output_dir`` from ``-o``, PPO's model paths) are refused in the file and as flags. One
extra YAML key, ``lora``, is a mapping of ``peft.LoraConfig`` fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
from collections.abc import Callable
from typing import Any, get_args, get_origin, get_type_hints

from caitool.errors import CaitoolError

# caitool flag (a TrainFlags attribute) -> the TRL fields it sets.
SHORTCUTS = {"epochs": ("num_train_epochs",),
             "batch_size": ("per_device_train_batch_size", "per_device_eval_batch_size"),
             **{name: (name,) for name in ("max_steps", "learning_rate", "gradient_accumulation_steps",
                                           "max_length", "seed", "logging_steps", "save_steps",
                                           "report_to")}}
# Values no training run can use, whether a flag or a --config key gives them (TRL and
# torch would fail on them later, deep in a traceback).
AT_LEAST_ONE = ("max_steps", "batch_size", "per_device_train_batch_size",
                "per_device_eval_batch_size", "gradient_accumulation_steps", "max_length")
POSITIVE = ("epochs", "num_train_epochs", "learning_rate")

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


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


# -- the YAML file ---------------------------------------------------------------------------


def load_yaml(path: str) -> dict[str, Any]:
    import yaml

    from caitool.io import files, yaml_safe

    text = files.read_text(path, "training config")
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


# -- one parser for caitool's flags and TRL's fields -----------------------------------------


def trl_parser(config_cls: type, **kwargs: Any):
    """TRL's config class as an argparse parser whose errors are one-line FlagErrors."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message: str):  # argparse would print its usage and exit
            raise FlagError(message.removeprefix("argument "))

    return Parser(config_cls, allow_abbrev=False, add_help=False, **kwargs)


def _default(field: dataclasses.Field) -> Any:
    envvar = field.metadata.get("envvar")
    return (os.environ.get(envvar) or field.default) if envvar else field.default


def _is_list(kind: Any) -> bool:
    return get_origin(kind) is list or any(get_origin(arg) is list for arg in get_args(kind))


def _as_fields(group: type) -> type:
    """A caitool flag group (fields made with commands._flags.flag) as HfArgumentParser reads
    dataclasses: help and other names (``-m``) in the metadata it hands argparse; a list is a
    flag given once per item, as click takes it."""
    hints = get_type_hints(group)
    made = []
    for f in dataclasses.fields(group):
        spelt = (f"--{f.name}", flag_name(f.name))
        meta: dict[str, Any] = {"help": f.metadata["help"],
                                "aliases": [n for n in f.metadata["names"] if n not in spelt]}
        kind = hints[f.name]
        if _is_list(kind):
            kind, meta["action"] = str | None, "append"
        made.append((f.name, kind, dataclasses.field(default=_default(f), metadata=meta)))
    return dataclasses.make_dataclass(group.__name__, made)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise FlagError(message.removeprefix("argument "))


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-"


def _bare_booleans(arguments: list[str], by_option: dict[str, argparse.Action]) -> list[str]:
    """A bare boolean flag means true, and must not swallow the input file after it."""
    from transformers.hf_argparser import string_to_bool

    tokens = []
    for i, token in enumerate(arguments):
        action = by_option.get(token)
        following = arguments[i + 1] if i + 1 < len(arguments) else None
        if action is not None and action.type is string_to_bool and (
                following is None or following.lower() not in TRUTHY):
            token += "=true"
        tokens.append(token)
    return tokens


def _kind(action: argparse.Action) -> str:
    if action.choices is not None:
        return "one of " + ", ".join(map(str, action.choices))
    return {int: "a whole number", float: "a number"}.get(action.type, "true or false")


def _file_value(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    """A YAML value checked as the flag's text would be (YAML reads ``1e-5`` as text): a
    number is then that number, anything else is kept as written."""
    from transformers.hf_argparser import string_to_bool

    if value is None or (action.type not in (int, float, string_to_bool) and action.choices is None):
        return value  # text, or what TRL reads itself (a mapping, a list of options)
    many = isinstance(value, list) and action.nargs in ("+", "*")
    items = []
    for item in value if many else [value]:
        try:
            read = action.type(str(item).lower() if isinstance(item, bool) else str(item))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            read = None
        if read is None or (action.choices is not None and read not in action.choices):
            raise CaitoolError(f"{path}: '{key}' must be {_kind(action)}, not {item!r}")
        items.append(read if action.type in (int, float) else item)
    return items if many else items[0]


def check_value(name: str, value: Any, where: str) -> None:
    """The one-line checks of a training value, named ``where`` (a flag, or file: 'key')."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
            raise CaitoolError(f"{where}: {item} is not a finite number")
        if isinstance(item, bool) or not isinstance(item, (int, float)) \
                or (name == "max_steps" and item == -1):  # TRL's own "no limit"
            continue
        if name in AT_LEAST_ONE and item < 1:
            raise CaitoolError(f"{where} must be at least 1")
        if name in POSITIVE and item <= 0:
            raise CaitoolError(f"{where} must be positive")


@dataclasses.dataclass
class Request:
    """What the user asked of the TRL config: input files, the YAML file's fields, the
    TRL-named flags (fields that are caitool flags are in the flag groups instead)."""

    inputs: list[str]
    file: dict[str, Any]
    flags: dict[str, Any]
    lora: dict[str, Any] | None

    def sets(self, name: str) -> bool:
        return name in self.file or name in self.flags


def parse(groups: tuple[type, ...], config_class: Callable[[], type], arguments: list[str],
          owned: dict[str, str] | None = None) -> tuple[list[Any], Request]:
    """``arguments`` parsed once: one filled-in instance of each flag group (the first is
    TrainFlags, whose ``config`` names the YAML file) and what they ask of the TRL config.

    ``config_class`` is only called (importing TRL, seconds) when a flag is none of the
    groups' or there is a --config file to check."""
    from transformers import HfArgumentParser

    owned = {**OWNED, **(owned or {})}
    ours = HfArgumentParser([_as_fields(group) for group in groups], add_help=False)
    own_options = {option for action in ours._actions for option in action.option_strings}
    needs_trl = any(_is_option(token) and token.split("=", 1)[0] not in own_options
                    or token.startswith("--config=") for token in arguments) \
        or "--config" in arguments
    config_cls = config_class() if needs_trl else None
    # Where a TRL field has the name of one of ours, ours replaces it ("resolve").
    parser = _Parser(parents=[trl_parser(config_cls), ours] if config_cls else [ours],
                     conflict_handler="resolve", allow_abbrev=False, add_help=False)
    by_option = {option: action for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # only the flags given, not every default
    namespace, rest = parser.parse_known_args(_bare_booleans(arguments, by_option))
    for token in rest:
        if _is_option(token):
            name = token.split("=", 1)[0]
            raise FlagError(f"no such option: {name}: not a caitool flag nor a field of TRL's "
                            f"{config_cls.__name__}{did_you_mean(name, sorted(by_option))}")
    given = vars(namespace)
    mine = {f.name for group in groups for f in dataclasses.fields(group)}
    for name in given:
        if name in owned and name not in mine:
            raise FlagError(f"--{name}: set it with {owned[name]}")
    for name, value in given.items():
        check_value(name, value, flag_name(name))

    path = given.get("config")
    file_values = load_yaml(path) if path else {}
    lora = None
    if "lora" in file_values:
        lora = file_values.pop("lora") or {}
        if not isinstance(lora, dict):
            raise CaitoolError(f"{path}: 'lora' must be a mapping of LoRA settings")
    names = field_names(config_cls) if config_cls else []
    by_dest: dict[str, argparse.Action] = {}
    for action in parser._actions:
        by_dest.setdefault(action.dest, action)  # a field's own flag, not its --no_ twin
    for key, value in file_values.items():
        if key in owned:
            raise CaitoolError(f"{path}: set '{key}' with {owned[key]}, not in the file")
        if key not in names:
            raise CaitoolError(f"{path}: '{key}' is not a {config_cls.__name__} "
                               f"field{did_you_mean(key, names)}")
        file_values[key] = _file_value(by_dest[key], key, value, path) if key in by_dest else value
        check_value(key, file_values[key], f"{path}: '{key}'")

    filled = [group(**{f.name: given.get(f.name, file_values.get(f.name, _default(f)))
                       for f in dataclasses.fields(group)}) for group in groups]
    return filled, Request(rest or ["-"], {k: v for k, v in file_values.items() if k not in mine},
                           {k: v for k, v in given.items() if k not in mine}, lora)


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
    given = {key: value for key, value in (("r", flags.lora_r), ("lora_alpha", flags.lora_alpha),
                                           ("lora_dropout", flags.lora_dropout))
             if value is not None}
    if flags.lora or lora is not None or given:
        lora = {**LORA_DEFAULTS, **(lora or {}), **given}
    elif flags.save_adapter:
        raise CaitoolError("--save-adapter needs --lora")
    return Settings(args, lora, values, asked.inputs)


def check_outputs(flags: Any) -> None:
    """Catch outputs that cannot be written before anything heavy happens."""
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
