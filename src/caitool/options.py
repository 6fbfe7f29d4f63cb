"""Flags shared by many commands, declared once so they are spelled the same everywhere.

A command takes a group of flags by declaring a parameter typed with the group's dataclass
(``stream: StreamFlags``); :func:`command` expands each group into its typer options and
hands the command one filled-in dataclass per group.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Annotated, Any, get_type_hints

import typer

from caitool.errors import CaitoolError


def flag(default: Any, *names: str, help: str, hidden: bool = False, envvar: str | None = None):
    """A dataclass field that is also a typer option."""
    return field(default=default, metadata={
        "option": typer.Option(*names, help=help, hidden=hidden, envvar=envvar, show_default=True)
    })


@dataclass
class StreamFlags:
    output: str | None = flag(None, "-o", "--output", help="Write records to FILE instead of stdout.")
    batch_size: int = flag(16, "--batch-size",
                           help="Records per batch; each batch is written as soon as it is done.")
    resume: bool = flag(False, "--resume",
                        help="With -o FILE: skip records whose id is already in FILE and append the rest.")
    skip_invalid: bool = flag(False, "--skip-invalid", help="Report and skip bad input lines instead of stopping.")
    shard: str | None = flag(None, "--shard",
                             help="I/N: process only the I-th of N deterministic shards of the input (1-based).")


@dataclass
class ModelFlags:
    model: str | None = flag(None, "-m", "--model", envvar="CAITOOL_MODEL",
                             help="Model: a local directory or a hub id (env CAITOOL_MODEL).")
    backend: str = flag("hf", "--backend", envvar="CAITOOL_BACKEND",
                        help="Backend: hf (in-process transformers), vllm, or openai (any compatible server).")
    format: str = flag("auto", "--format", help="Prompt format: chat (the model's chat template), "
                       "raw (Human:/Assistant: transcript), or auto.")
    device: str = flag("auto", "--device", help="hf backend: cpu, cuda, cuda:1 ... or auto.")
    dtype: str = flag("auto", "--dtype", help="hf/vllm backends: auto, float32, bfloat16 or float16.")
    base_url: str | None = flag(None, "--base-url", envvar="CAITOOL_BASE_URL",
                                help="openai backend: the server's URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = flag("OPENAI_API_KEY", "--api-key-env",
                            help="openai backend: the environment variable holding the API key.")
    concurrency: int = flag(8, "--concurrency", help="openai backend: requests in flight at once.")
    tensor_parallel_size: int = flag(1, "--tensor-parallel-size", help="vllm backend: GPUs per model replica.")

    def require_model(self) -> str:
        if not self.model:
            raise CaitoolError("no model given: pass -m/--model (or set CAITOOL_MODEL)")
        return self.model

    def backend_options(self) -> dict[str, Any]:
        return {
            "device": self.device, "dtype": self.dtype, "base_url": self.base_url,
            "api_key_env": self.api_key_env, "concurrency": self.concurrency,
            "tensor_parallel_size": self.tensor_parallel_size,
        }

    def create_backend(self):
        from caitool import backends

        if self.format not in ("auto", "chat", "raw"):
            raise CaitoolError(f"--format must be auto, chat or raw, not '{self.format}'")
        return backends.create(self.backend, self.require_model(), **self.backend_options())


@dataclass
class SamplingFlags:
    max_new_tokens: int = flag(256, "--max-new-tokens", help="Most tokens to generate per completion.")
    temperature: float = flag(1.0, "--temperature", help="Sampling temperature (the paper uses 1); 0 is greedy.")
    top_p: float = flag(1.0, "--top-p", help="Nucleus sampling threshold.")
    seed: int = flag(0, "--seed", help="Seed for principle sampling and generation.")

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise CaitoolError("--max-new-tokens must be at least 1")
        if self.temperature < 0:
            raise CaitoolError("--temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise CaitoolError("--top-p must be in (0, 1]")


@dataclass
class TrainFlags:
    """Flags every training command shares. A knob left unset (None) keeps the value from
    --config, or else the TRL config's own default."""

    model: str | None = flag(None, "-m", "--model", help="Model to start from: a local directory or a hub id.")
    output: str | None = flag(None, "-o", "--output",
                              help="Directory to write the trained model (and checkpoints/) to.")
    config: str | None = flag(None, "--config",
                              help="YAML file of TRL config fields (flags win over it); a 'lora' mapping "
                                   "holds LoRA settings.")
    epochs: float | None = flag(None, "--epochs", help="Passes over the data (TRL's num_train_epochs).")
    max_steps: int | None = flag(None, "--max-steps",
                                 help="Stop after this many optimizer steps (PPO: rollout batches); overrides "
                                      "--epochs.")
    learning_rate: float | None = flag(None, "--learning-rate", help="Peak learning rate.")
    batch_size: int | None = flag(None, "--batch-size", help="Examples per device per step.")
    gradient_accumulation_steps: int | None = flag(None, "--gradient-accumulation-steps",
                                                   help="Steps to accumulate before each optimizer update.")
    max_length: int | None = flag(None, "--max-length", help="Most tokens per example (PPO: per prompt).")
    format: str = flag("auto", "--format",
                       help="Prompt format: chat (the model's chat template), raw (Human:/Assistant: "
                            "transcript), or auto.")
    seed: int | None = flag(None, "--seed", help="Seed for initialisation, shuffling and sampling.")
    logging_steps: float | None = flag(None, "--logging-steps", help="Write a metrics line every N steps.")
    save_steps: float | None = flag(None, "--save-steps", help="Save a checkpoint to OUTPUT/checkpoints every N steps.")
    metrics: str = flag("-", "--metrics", help="Where to write metrics as JSONL: a file, or - for stdout.")
    resume: bool = flag(False, "--resume", help="Continue from the latest checkpoint in OUTPUT/checkpoints.")
    resume_from: str | None = flag(None, "--resume-from", help="Continue from this checkpoint directory.")
    skip_invalid: bool = flag(False, "--skip-invalid", help="Report and skip bad input lines instead of stopping.")
    lora: bool = flag(False, "--lora", help="Train a LoRA adapter (peft) instead of all weights.")
    lora_r: int | None = flag(None, "--lora-r", help="LoRA rank (default 16).")
    lora_alpha: int | None = flag(None, "--lora-alpha", help="LoRA alpha (default 32).")
    save_adapter: bool = flag(False, "--save-adapter",
                              help="With --lora: save the adapter alone instead of merging it into the weights.")


GROUPS = (StreamFlags, ModelFlags, SamplingFlags, TrainFlags)


def command(fn):
    """Expand flag-group parameters of ``fn`` into typer options (see module docstring)."""
    hints = get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    for name, param in signature.parameters.items():
        hint = hints.get(name, param.annotation)
        if hint in GROUPS:
            groups[name] = hint
            for f in dataclasses.fields(hint):
                params.append(inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                    annotation=Annotated[f.type if not isinstance(f.type, str) else
                                         get_type_hints(hint)[f.name], f.metadata["option"]],
                ))
        else:
            params.append(param.replace(annotation=hint))

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        for name, cls in groups.items():
            kwargs[name] = cls(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls)})
        return fn(**kwargs)

    # Positional-or-keyword params must precede keyword-only ones in a signature.
    params.sort(key=lambda p: p.kind)
    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
