"""TRL config objects from caitool's defaults, a YAML file and command-line flags.

The YAML file's keys are the TRL config class's own fields (``SFTConfig``, ``RewardConfig``,
``PPOConfig``, ``DPOConfig``: every ``TrainingArguments`` field included), so nothing TRL
offers is re-declared here. One extra key, ``lora``, is a mapping of ``peft.LoraConfig``
fields. Precedence, lowest first: caitool's defaults, the command's defaults, the file,
the flags that were given.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError

# Flag name -> TRL field(s) it sets.
FLAG_FIELDS = {
    "epochs": ("num_train_epochs",),
    "max_steps": ("max_steps",),
    "learning_rate": ("learning_rate",),
    "batch_size": ("per_device_train_batch_size", "per_device_eval_batch_size"),
    "gradient_accumulation_steps": ("gradient_accumulation_steps",),
    "max_length": ("max_length",),
    "seed": ("seed",),
    "logging_steps": ("logging_steps",),
    "save_steps": ("save_steps",),
}

LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}


def load_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaitoolError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise CaitoolError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
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


def _unknown(key: str, known: list[str], what: str, source: str) -> CaitoolError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return CaitoolError(f"{source}: '{key}' is not a {what} field{hint}")


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
class Settings:
    """A built TRL config plus the pieces that are not TRL config fields."""

    args: Any
    lora: dict[str, Any] | None
    values: dict[str, Any]


def build(config_cls: type, flags: Any, output_dir: str, command_defaults: dict[str, Any],
          flag_fields: dict[str, tuple[str, ...]] | None = None,
          extra: dict[str, Any] | None = None) -> Settings:
    """``config_cls`` filled from defaults < ``command_defaults`` < ``flags.config`` < flags.

    ``extra`` holds values the command computed from its own flags (they win over the file).
    """
    field_names = [f.name for f in dataclasses.fields(config_cls)]
    file_values = load_yaml(flags.config) if flags.config else {}
    lora = None
    if "lora" in file_values:
        lora = file_values.pop("lora") or {}
        if not isinstance(lora, dict):
            raise CaitoolError(f"{flags.config}: 'lora' must be a mapping of LoRA settings")
    if "output_dir" in file_values:
        raise CaitoolError(f"{flags.config}: set the output directory with -o/--output, not "
                           "'output_dir'")
    for key in file_values:
        if key not in field_names:
            raise _unknown(key, field_names, config_cls.__name__, flags.config)

    values: dict[str, Any] = {"report_to": "none", "save_strategy": "steps",
                              **device_defaults(), **command_defaults}
    values.update(file_values)
    if "gradient_checkpointing" in file_values and "activation_checkpointing" not in file_values:
        # transformers renamed the field; the old name only counts where the new one is unset.
        values["activation_checkpointing"] = values.pop("gradient_checkpointing")
    for flag, fields in (flag_fields or FLAG_FIELDS).items():
        value = getattr(flags, flag, None)
        if value is not None:
            for name in fields:
                values[name] = value
    values.update(extra or {})
    values["output_dir"] = output_dir
    values = {k: v for k, v in values.items() if k in field_names}
    try:
        args = config_cls(**values)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaitoolError(f"invalid training configuration: {first}") from None

    if flags.lora or lora is not None or flags.lora_r is not None or flags.lora_alpha is not None:
        lora = {**LORA_DEFAULTS, **(lora or {})}
        if flags.lora_r is not None:
            lora["r"] = flags.lora_r
        if flags.lora_alpha is not None:
            lora["lora_alpha"] = flags.lora_alpha
    elif flags.save_adapter:
        raise CaitoolError("--save-adapter needs --lora")
    return Settings(args, lora, values)


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
    if not flags.model:
        raise CaitoolError("no model given: pass -m/--model")


def lora_config(settings: dict[str, Any], task_type: str):
    from peft import LoraConfig

    known = [f.name for f in dataclasses.fields(LoraConfig)]
    for key in settings:
        if key not in known:
            raise _unknown(key, known, "LoraConfig", "lora")
    try:
        return LoraConfig(task_type=task_type, **settings)
    except (TypeError, ValueError) as exc:
        raise CaitoolError(f"invalid LoRA settings: {exc}") from None
