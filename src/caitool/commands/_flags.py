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
from typer.core import TyperCommand

from caitool.backends.base import SamplingParams
from caitool.errors import CaitoolError

Input = Annotated[str, typer.Argument(help="JSONL input file, or - for stdin.", show_default=True)]
ConstitutionName = Annotated[str, typer.Option(
    "-c", "--constitution", envvar="CAITOOL_CONSTITUTION",
    help="A built-in constitution's name (see 'caitool constitution list') or a file/directory.")]


def flag(default: Any, *names: str, help: str, hidden: bool = False, envvar: str | None = None,
         metavar: str | None = None):
    """A dataclass field that is also a typer option (and, for the training commands, an
    argparse flag: see caitool.training.args)."""
    return field(default=default, metadata={
        "option": typer.Option(*names, help=help, hidden=hidden, envvar=envvar, metavar=metavar,
                               show_default=True),
        "names": names, "help": help, "envvar": envvar,
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

    def __post_init__(self) -> None:
        # Before any model loads: a run that cannot write its output should cost nothing.
        from caitool.io.jsonl import check_writable
        from caitool.scaling import is_uri

        if not is_uri(self.output):  # object storage: checked by --ray's writer
            check_writable(self.output)

    def stream_options(self) -> dict[str, Any]:
        """The batch loop's keyword arguments."""
        return {"output": self.output, "batch_size": self.batch_size, "resume": self.resume,
                "skip_invalid": self.skip_invalid, "shard": self.shard}


# Backend options: None means "not given", so that a flag the chosen backend does not take
# is an error (the registry checks) while the backend's own defaults stay its own.
BACKEND_OPTIONS = ("device", "dtype", "max_batch_size", "base_url", "api_key_env", "concurrency",
                   "tensor_parallel_size")


@dataclass
class ModelFlags:
    model: str | None = flag(None, "-m", "--model", envvar="CAITOOL_MODEL",
                             help="Model: a local directory, a hub id, a GGUF file or a built-in name "
                                  "(env CAITOOL_MODEL; default: the built-in SmolLM2-135M-Instruct, "
                                  "except for the openai backend).")
    backend: str = flag("hf", "--backend", envvar="CAITOOL_BACKEND",
                        help="Backend: hf (in-process transformers), vllm, or openai (any compatible server).")
    format: str = flag("auto", "--format", help="Prompt format: chat (the model's chat template), "
                       "raw (Human:/Assistant: transcript), or auto.")
    device: str | None = flag(None, "--device", help="hf backend: cpu, cuda, cuda:1 ... (default auto).")
    dtype: str | None = flag(None, "--dtype",
                             help="hf/vllm backends: auto, float32, bfloat16 or float16 (default auto).")
    max_batch_size: int | None = flag(None, "--max-batch-size",
                                      help="hf backend: rows per forward pass, halved for good on "
                                           "running out of memory (default 64).")
    base_url: str | None = flag(None, "--base-url",
                                help="openai backend: the server's URL, e.g. http://127.0.0.1:8000/v1 "
                                     "(env CAITOOL_BASE_URL).")
    api_key_env: str | None = flag(None, "--api-key-env",
                                   help="openai backend: the environment variable holding the API key "
                                        "(default OPENAI_API_KEY).")
    concurrency: int | None = flag(None, "--concurrency",
                                   help="openai backend: requests in flight at once (default 8).")
    tensor_parallel_size: int | None = flag(None, "--tensor-parallel-size",
                                            help="vllm backend: GPUs per model replica (default 1).")
    backend_option: list[str] | None = flag(None, "--backend-option", metavar="KEY=VALUE",
                                            help="Any option of the backend's own (a field of its "
                                                 "Options, e.g. one a backend from another package "
                                                 "declares); repeat for several.")
    dry_run: bool = flag(False, "--dry-run",
                         help="Run no model: write one JSON line per request the model would get "
                              "(its exact text, and the stop strings and sampling or the scored "
                              "options) instead of the output; loads the tokenizer at most.")

    def require_model(self) -> str:
        """The model named, else the built-in one for a backend that loads models itself; a
        server's model has no default caitool could know."""
        from caitool.backends import registry

        if self.model:
            return self.model
        if registry.backend_class(self.backend).loads_models:
            from caitool.models import DEFAULT_MODEL

            return DEFAULT_MODEL
        raise CaitoolError(f"no model given: pass -m/--model (or set CAITOOL_MODEL); the "
                           f"{self.backend} backend has no default model")

    def backend_options(self) -> dict[str, Any]:
        """The backend options the user gave, its own flags' and --backend-option's."""
        given = {name: getattr(self, name) for name in BACKEND_OPTIONS
                 if getattr(self, name) is not None}
        if self.backend_option:
            from caitool.backends import registry

            for name, value in registry.parse_options(self.backend, self.backend_option).items():
                if name in given:
                    raise CaitoolError(f"--backend-option {name}: given twice (also as "
                                       f"--{name.replace('_', '-')})")
                given[name] = value
        return given

    def create_backend(self):
        from caitool.backends import registry
        from caitool.render import check_format

        check_format(self.format)
        if self.dry_run:
            from caitool.backends import dry_run

            return dry_run.create(self.backend, self.require_model(), **self.backend_options())
        return registry.create(self.backend, self.require_model(), **self.backend_options())


@dataclass
class RayFlags:
    ray: bool = flag(False, "--ray",
                     help="Run the batches on Ray: --replicas model replicas, each with its own "
                          "backend; input and -o may also be s3://, gs://... URIs (needs "
                          "caitool[ray]; see docs/scaling.md).")
    ray_address: str | None = flag(None, "--ray-address",
                                   help="With --ray: the cluster to join, e.g. auto or "
                                        "HEAD:6379 (env RAY_ADDRESS; default: a local Ray "
                                        "started for this run).")
    replicas: int = flag(1, "--replicas", help="With --ray: model replicas (Ray actors).")
    gpus_per_replica: float = flag(0.0, "--gpus-per-replica",
                                   help="With --ray: GPUs per replica (vllm: its tensor-parallel "
                                        "size).")
    cpus_per_replica: float | None = flag(None, "--cpus-per-replica",
                                          help="With --ray: CPUs per replica, fractions allowed "
                                               "(default: 1, or on a local Ray without GPUs its "
                                               "CPUs shared out).")

    def __post_init__(self) -> None:
        if not self.ray:
            given = [name for name, unset in (("--ray-address", self.ray_address is None),
                                              ("--replicas", self.replicas == 1),
                                              ("--gpus-per-replica", self.gpus_per_replica == 0),
                                              ("--cpus-per-replica", self.cpus_per_replica is None))
                     if not unset]
            if given:
                raise CaitoolError(f"{given[0]} needs --ray")
            return
        self.options().check()

    def options(self):
        import os

        from caitool.scaling.cluster import RayOptions

        return RayOptions(address=self.ray_address or os.environ.get("RAY_ADDRESS") or None,
                          replicas=self.replicas, gpus_per_replica=self.gpus_per_replica,
                          cpus_per_replica=self.cpus_per_replica)


def run_records(name: str, input: str | None, *, model: ModelFlags, stream_flags: StreamFlags,
                scale: RayFlags, step, validate, describe: str, records=None, finish=None) -> None:
    """A record command's batch loop, on the executor its flags ask for: here, as a dry
    run, or on Ray replicas. ``step(backend)`` gives the function of a batch;
    ``records`` and ``finish``: see io.stream.run."""
    from caitool.io import stream
    from caitool.render import check_format

    check_format(model.format)
    if model.dry_run:
        if scale.ray:
            raise CaitoolError("--dry-run runs no model, so there is nothing to scale: drop --ray")
        if stream_flags.resume:
            raise CaitoolError("--resume does not combine with --dry-run (it would append the "
                               "requests to the output); drop --resume")
        from caitool.backends.dry_run import DryRun

        executor = DryRun(model.create_backend, step)
    elif scale.ray:
        from caitool.backends import registry
        from caitool.scaling.engine import OnRay
        from caitool.scaling.replica import BackendSpec

        cls = registry.backend_class(model.backend)
        options = model.backend_options()
        registry.check_options(model.backend, cls, options)
        options, env_keys = cls.for_replica(options, scale.gpus_per_replica)
        executor = OnRay(name, BackendSpec(model.backend, model.require_model(), options), step,
                         scale.options(), env_keys=env_keys)
    else:
        executor = stream.InProcess(step, model.create_backend)
    stream.run(name, input, executor, validate=validate, describe=describe, records=records,
               finish=finish, **stream_flags.stream_options())


@dataclass
class SamplingFlags:
    max_new_tokens: int = flag(SamplingParams.max_new_tokens, "--max-new-tokens",
                               help="Most tokens to generate per completion.")
    temperature: float = flag(1.0, "--temperature", help="Sampling temperature (the paper uses 1); 0 is greedy.")
    top_p: float = flag(1.0, "--top-p", help="Nucleus sampling threshold.")
    top_k: int = flag(0, "--top-k", help="Sample from the K likeliest tokens only; 0 is no limit.")
    repetition_penalty: float = flag(1.0, "--repetition-penalty",
                                     help="Above 1 discourages repeating earlier tokens (small real "
                                          "models loop without it; make demo uses 1.2); 1 is off.")
    seed: int = flag(0, "--seed", help="Seed for principle sampling and generation.")

    def params(self):
        """Checked, as the backends' sampling parameters."""
        from caitool.backends.base import SamplingParams

        if self.max_new_tokens < 1:
            raise CaitoolError("--max-new-tokens must be at least 1")
        if self.temperature < 0:
            raise CaitoolError("--temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise CaitoolError("--top-p must be in (0, 1]")
        if self.top_k < 0:
            raise CaitoolError("--top-k must be >= 0")
        if self.repetition_penalty <= 0:
            raise CaitoolError("--repetition-penalty must be positive")
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                              top_p=self.top_p, top_k=self.top_k,
                              repetition_penalty=self.repetition_penalty, seed=self.seed)


def _is_group(hint: Any) -> bool:
    return (isinstance(hint, type) and dataclasses.is_dataclass(hint)
            and all("option" in f.metadata for f in dataclasses.fields(hint)))


class NoTypeForHelp:
    """A click command (or group) mixin: -h/--help shows no type in help, as caitool's other
    boolean flags do (see caitool.cli.conventions)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Command(NoTypeForHelp, TyperCommand):
    """The click command class of caitool's commands."""


def group_options(group: type) -> list[inspect.Parameter]:
    """A flag group's fields as the keyword parameters typer makes options of."""
    hints = get_type_hints(group)
    return [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                              annotation=Annotated[hints[f.name], f.metadata["option"]])
            for f in dataclasses.fields(group)]


def command(fn):
    """Expand flag-group parameters of ``fn`` into typer options (see module docstring)."""
    hints = get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    for name, param in signature.parameters.items():
        hint = hints.get(name, param.annotation)
        if _is_group(hint):
            groups[name] = hint
            params.extend(group_options(hint))
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
