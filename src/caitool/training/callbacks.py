"""Trainer callbacks: metrics as JSONL (data), a rich progress bar on stderr (for people).

Both act on the main process only, so ``accelerate launch`` with several processes still
writes one metrics line per logging step and draws one bar.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from transformers import TrainerCallback

from caitool import console
from caitool.errors import CaitoolError
from caitool.io.files import replacing
from caitool.training import checkpoints


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


class MetricsCallback(TrainerCallback):
    """One JSON object per logging step: ``{"command", "step", "epoch", <TRL's metrics>}``."""

    def __init__(self, command: str, stream: TextIO):
        self.command = command
        self.stream = stream
        self.lines: list[dict[str, Any]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        line = {"command": self.command, "step": state.global_step,
                "epoch": None if state.epoch is None else round(float(state.epoch), 4)}
        line.update({key: _clean(value) for key, value in logs.items()})
        self.write(line)

    def write(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        try:
            self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = getattr(self.stream, "path", "stdout")
            raise CaitoolError(f"cannot write metrics to {where}: {exc.strerror or exc} (at step "
                               f"{line.get('step')}; checkpoints so far are kept)") from None


class ProgressCallback(TrainerCallback):
    """A rich progress bar with the latest loss (or the RL reward and KL) on stderr, when it is
    a terminal."""

    # PPO logs objective/*; RLOO and GRPO log reward and kl.
    SHOWN = ("loss", "objective/scores", "objective/kl", "reward", "kl", "accuracy",
             "rewards/margins")

    def __init__(self, description: str):
        self.description = description
        self.bar = None
        self.task = None

    def _active(self, state) -> bool:
        return state.is_world_process_zero and not console.quiet() and sys.stderr.isatty()

    def on_train_begin(self, args, state, control, **kwargs):
        if not self._active(state):
            return
        from rich.progress import Progress, TextColumn

        self.bar = Progress(*console.progress_columns(TextColumn("{task.fields[status]}")),
                            console=console.stderr)
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=state.max_steps or None,
                                      completed=state.global_step, status="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step, total=state.max_steps or None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        shown = [f"{key.split('/')[-1]} {logs[key]:.4g}" for key in self.SHOWN
                 if isinstance(logs.get(key), (int, float))]
        if shown:
            self.bar.update(self.task, status="  ".join(shown))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)
            self.bar.stop()
            self.bar = None


class Marker(TrainerCallback):
    """Marks each checkpoint complete (see :mod:`caitool.training.checkpoints`) once every
    process has saved its part. Installed after every other callback, so that what they add
    to a checkpoint (PPO's value model) is in it first."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        accelerator = self.trainer.accelerator
        accelerator.wait_for_everyone()
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not accelerator.is_main_process or not checkpoint.is_dir():
            return
        with replacing(checkpoint / checkpoints.MARKER) as partial:
            partial.write_text(checkpoints.marker(state.global_step,
                                                  getattr(self.trainer, "_total_train_tokens", None)),
                               encoding="utf-8")


def install(trainer, command: str, stream: TextIO, description: str) -> MetricsCallback:
    """Replace transformers' own progress/printing callbacks (which write to stdout) with
    ours, and mark checkpoints complete."""
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HFProgress

    trainer.remove_callback(HFProgress)
    trainer.remove_callback(PrinterCallback)
    metrics = MetricsCallback(command, stream)
    trainer.add_callback(metrics)
    trainer.add_callback(ProgressCallback(description))
    trainer.add_callback(Marker(trainer))
    return metrics


class Snapshots(TrainerCallback):
    """``--snapshots N``: the model as it is at N evenly spaced steps, each a model directory
    of its own (``OUTPUT/snapshots/step-K``) that ``generate`` and ``eval`` read, so a run can
    be measured along its training (the paper's frontier over RL steps). Each names the run
    it belongs to (``snapshot_of``), whose summary file tells where its data came from."""

    def __init__(self, trainer, count: int, output: str, tokenizer: Any, model_of, command: str):
        self.trainer, self.count, self.output = trainer, count, Path(output)
        self.tokenizer, self.model_of, self.command = tokenizer, model_of, command
        self.steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        total = max(1, int(state.max_steps or 0))
        self.steps = {max(1, round(total * i / self.count)) for i in range(1, self.count + 1)}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            self.save(state.global_step)

    def save(self, step: int) -> None:
        from caitool import __version__

        accelerator = self.trainer.accelerator
        if accelerator.is_main_process:
            target = self.output / "snapshots" / f"step-{step:06d}"
            model = self.model_of(self.trainer)
            model.save_pretrained(target)
            self.tokenizer.save_pretrained(target)
            summary = {"command": self.command, "caitool_version": __version__, "step": step,
                       "snapshot_of": str(self.output)}
            (target / "caitool_training.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.wait_for_everyone()
