"""The one path every trainer takes: from a TRL trainer to a saved model directory.

:func:`fit` opens the metrics session, constructs the trainer (a model that will not load,
or a configuration TRL refuses, is one line, not a traceback), installs caitool's
callbacks, trains, and saves a model directory that transformers, vLLM and TRL load as it
is: whole weights, LoRA merged into them, or the adapter alone, with the tokenizer and a
summary file. While a trainer runs, stray prints from the libraries go to stderr; stdout
carries the metrics JSONL only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from caitool import __version__, console
from caitool.errors import CaitoolError
from caitool.training import args as arguments

CHECKPOINTS = "checkpoints"
SUMMARY = "caitool_training.json"


class LazyFile:
    """A metrics file opened on the first write, so that only the process writing metrics
    (the main one, under accelerate) creates or truncates it."""

    def __init__(self, path: str, append: bool):
        self.path, self.append, self.handle = path, append, None

    def write(self, text: str) -> None:
        if self.handle is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "a" if self.append else "w", encoding="utf-8")
        self.handle.write(text)

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


@contextlib.contextmanager
def metrics_session(flags: Any) -> Iterator[TextIO]:
    """Yield the metrics stream; meanwhile send everything else printed to stdout to stderr."""
    data_out = sys.stdout
    stream = data_out if flags.metrics in ("-", None) else LazyFile(
        flags.metrics, append=bool(flags.resume or flags.resume_from))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield stream
    finally:
        if isinstance(stream, LazyFile):
            stream.close()


def quiet_libraries() -> None:
    import warnings

    import transformers

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if int(os.environ.get("RANK", "0") or 0) > 0:
        # Under accelerate/torchrun every process runs this; one of them reports.
        os.environ["CAITOOL_QUIET"] = "1"
    # Deprecation notices about names that TRL itself uses; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # Warnings stay (they are about the user's data and model); progress bars go, since
    # caitool draws its own.
    transformers.logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_tokenizer(path: str, what: str = "model"):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - damaged tokenizer files raise all kinds
        raise CaitoolError(f"cannot load the {what} '{path}': {first_line(exc)}") from None
    if tokenizer.eos_token_id is None:
        raise CaitoolError(f"the {what} '{path}' has no end-of-sequence token")
    if tokenizer.pad_token is None:
        # The saved model must carry a pad token so that it batches as it is.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_name(flags: Any) -> str:
    """The starting model as the user named it: -m, else the built-in default."""
    from caitool.models import DEFAULT_MODEL

    return flags.model or DEFAULT_MODEL


def base_model(flags: Any) -> str:
    """The directory to start from. Call it once the records are read and checked: a GGUF
    file (or the built-in model) is converted here the first time, and a bad dataset should
    cost no model. ``flags.model`` keeps the name as given, for messages and the summary."""
    from caitool.models import check_loadable, local_model

    flags.model = model_name(flags)
    path = local_model(flags.model)
    check_loadable(path, flags.model)
    return path


def tokenizer_and_format(flags: Any, path: str) -> tuple[Any, str]:
    """The starting model's tokenizer (from ``path``, see :func:`base_model`) and the
    prompt format to render the data in."""
    from caitool.render import has_chat_template, resolve_format

    quiet_libraries()
    tokenizer = load_tokenizer(path)
    return tokenizer, resolve_format(flags.format, has_chat_template(tokenizer), flags.model)


def resume_checkpoint(command: str, flags: Any) -> str | None:
    """The checkpoint to resume from, if asked for: ``--resume-from``, or under ``--resume``
    the newest complete one (see :mod:`caitool.training.checkpoints`)."""
    from caitool.training import checkpoints

    return checkpoints.resume(command, flags, Path(flags.output) / CHECKPOINTS)


def peft_config(settings: arguments.Settings, task_type: str):
    return arguments.lora_config(settings.lora, task_type) if settings.lora is not None else None


def last_values(metrics, *keys: str) -> dict[str, Any]:
    """The last logged value of each key, for the summary file."""
    found: dict[str, Any] = {}
    for line in metrics.lines:
        for key in keys:
            if line.get(key) is not None:
                found[key] = line[key]
    return found


def fit(command: str, flags: Any, settings: arguments.Settings, tokenizer: Any,
        make_trainer: Callable[[], Any], description: str,
        summary: Callable[[Any, Any, Any], dict[str, Any]], *,
        examples: int | None = None, dropped: str | None = None, resume: str | None = None,
        train: bool = True, model_of: Callable[[Any], Any] | None = None,
        data_line: dict[str, Any] | None = None) -> None:
    """Construct, train and save.

    ``summary(trainer, model, metrics)`` runs after training and returns what the summary
    file adds (it may evaluate and write metrics lines). ``examples`` and ``dropped``: how
    many examples the trainer was given, and why it may have left some out (reported).
    ``model_of(trainer)`` is the model to save (default: the trained model itself).
    ``data_line``: what the metrics stream says before training (e.g. the count of
    examples from each input file).
    """
    from caitool.training import callbacks, checkpoints, outputs

    if getattr(flags, "snapshots", 0) < 0:
        raise CaitoolError("--snapshots must be 0 or more")
    with metrics_session(flags) as stream:
        try:
            trainer = make_trainer()
        except OSError as exc:
            if outputs.written_under(exc, flags.output):
                raise CaitoolError(f"-o {flags.output}: cannot write {exc.filename} "
                                   f"({exc.strerror or exc})") from None
            raise CaitoolError(f"cannot load the model '{flags.model}': {first_line(exc)}") from None
        except (ValueError, RuntimeError) as exc:
            # TRL and transformers check the configuration (and the reporting integrations
            # report_to names) as the trainer is built.
            raise CaitoolError(f"cannot set up training: {first_line(exc)}") from None
        if examples is not None and dropped is not None:
            kept = len(trainer.train_dataset)
            if kept < examples:
                console.warn(command, f"{examples - kept} of {examples} examples left out: {dropped}")
        metrics = callbacks.install(trainer, command, stream, description)
        if getattr(flags, "snapshots", 0):
            trainer.add_callback(callbacks.Snapshots(
                trainer, flags.snapshots, flags.output, tokenizer,
                model_of or (lambda t: t.accelerator.unwrap_model(t.model)), command))
        checkpoints.restore(trainer, resume)
        if data_line and trainer.accelerator.is_main_process:
            done = checkpoints.step(Path(resume)) if resume else trainer.state.global_step
            metrics.write({"command": command, "step": done, **data_line})
        try:
            if train:
                trainer.train(**({"resume_from_checkpoint": resume} if resume else {}))
            model = model_of(trainer) if model_of else trainer.accelerator.unwrap_model(trainer.model)
            extra = summary(trainer, model, metrics)
            save(command, trainer, model, tokenizer, flags, extra, settings.lora)
        except OSError as exc:
            if not outputs.written_under(exc, flags.output):
                raise
            raise CaitoolError(f"cannot write {exc.filename}: {exc.strerror or exc} (at step "
                               f"{trainer.state.global_step}; the complete checkpoints before it "
                               "are kept: --resume goes on from the newest)") from None


def save(command: str, trainer, model, tokenizer, flags: Any, summary: dict[str, Any],
         lora: dict[str, Any] | None = None) -> None:
    """Write the final model: whole weights, LoRA merged into them, or the adapter alone."""
    from peft import PeftModel

    out = Path(flags.output)
    accelerator = trainer.accelerator
    accelerator.wait_for_everyone()
    if isinstance(model, PeftModel):
        if accelerator.is_main_process:
            if flags.save_adapter:
                model.save_pretrained(out)
            else:
                model.merge_and_unload().save_pretrained(out)
    elif model is accelerator.unwrap_model(trainer.model):
        trainer.save_model(str(out))
    elif accelerator.is_main_process:
        model.save_pretrained(out)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(out)
        summary = {"command": command, "caitool_version": __version__, "base_model": flags.model,
                   "adapter_only": bool(flags.save_adapter), "lora": lora, **summary}
        (out / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        console.info(command, f"wrote {'adapter' if flags.save_adapter else 'model'} to {out}")
    accelerator.wait_for_everyone()
