"""Checkpoints that a run killed at any moment, even half-way through a save, resumes from.

A Trainer writes ``checkpoint-N`` file by file (weights, optimizer, scheduler, random
states, ``trainer_state.json``, and caitool adds PPO's value model after them), so a run
killed during a save leaves a directory that looks like a checkpoint and is not one. Once
every process has finished its save, :class:`caitool.training.callbacks.Marker` writes
``caitool_checkpoint.json``
into it, last: a checkpoint is complete when it has one. (Checkpoints written before
caitool wrote markers are judged by their ``trainer_state.json``, which a Trainer writes
after the rest.) ``--resume`` takes the newest complete checkpoint, removes the newer
incomplete ones, and drops from a ``--metrics`` file the lines logged after the step it goes
on from, which the resumed run logs again; the marker also keeps the count of tokens trained
on, which TRL's trainers would otherwise start again from zero.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from caitool import console
from caitool.errors import CaitoolError
from caitool.io.files import replacing

MARKER = "caitool_checkpoint.json"
STATE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def problem(checkpoint: Path, markers_written: bool = False) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None. ``markers_written``: a checkpoint
    beside it has a marker, so this run's caitool writes them and one without is cut off."""
    if not checkpoint.is_dir():
        return "not a directory"
    if isinstance(_read_json(checkpoint / MARKER), dict):
        return None
    if markers_written or (checkpoint / MARKER).exists():
        return "its save did not finish"
    if not isinstance(_read_json(checkpoint / STATE), dict):
        return f"no complete {STATE}: its save did not finish"
    return None


def step(checkpoint: Path) -> int:
    """The optimizer steps done at ``checkpoint``."""
    for name, key in ((MARKER, "step"), (STATE, "global_step")):
        data = _read_json(checkpoint / name)
        if isinstance(data, dict) and isinstance(data.get(key), int):
            return data[key]
    match = _NAME.match(checkpoint.name)
    return int(match.group(1)) if match else 0


def marker(step_done: int, num_tokens: Any) -> str:
    """The marker's text: the step, and the token count when the trainer keeps one."""
    data: dict[str, Any] = {"step": step_done, "complete": True}
    if isinstance(num_tokens, (int, float)) and not isinstance(num_tokens, bool):
        data["num_tokens"] = num_tokens
    return json.dumps(data) + "\n"


def newest(directory: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint in ``directory``, and the newer ones that are not."""
    found = sorted((int(m.group(1)), entry) for entry in directory.iterdir()
                   if (m := _NAME.match(entry.name)) and entry.is_dir())
    marked = any((entry / MARKER).is_file() for _, entry in found)
    skipped: list[tuple[Path, str]] = []
    for _, entry in reversed(found):
        why = problem(entry, marked)
        if why is None:
            return entry, skipped
        skipped.append((entry, why))
    return None, skipped


def resume(command: str, flags: Any, checkpoints: Path) -> str | None:
    """The checkpoint to go on from (``--resume-from``, or the newest complete one under
    ``--resume``), said on stderr; None when not resuming."""
    if flags.resume_from:
        chosen = Path(flags.resume_from)
        if not chosen.is_dir():
            raise CaitoolError(f"--resume-from {flags.resume_from}: no such checkpoint directory")
        siblings = [entry for entry in chosen.parent.iterdir() if _NAME.match(entry.name)]
        why = problem(chosen, any((entry / MARKER).is_file() for entry in siblings))
        if why is not None:
            raise CaitoolError(f"--resume-from {flags.resume_from}: not a complete checkpoint ({why})")
    elif flags.resume:
        found, skipped = newest(checkpoints) if checkpoints.is_dir() else (None, [])
        if found is None:
            cut = f" ({len(skipped)} cut off during their save)" if skipped else ""
            raise CaitoolError(f"--resume: no complete checkpoint in {checkpoints} to resume "
                               f"from{cut}")
        chosen = found
        for entry, why in skipped:
            if _main_process():
                # Left there, it would be taken for the newest when checkpoints are rotated.
                shutil.rmtree(entry, ignore_errors=True)
                console.warn(command, f"removed {entry}: {why}")
    else:
        return None
    done = step(chosen)
    console.info(command, f"resuming from {chosen} (step {done})")
    if flags.metrics not in (None, "-") and _main_process():
        dropped = trim_metrics(flags.metrics, done)
        if dropped:
            console.info(command, f"--metrics {flags.metrics}: dropped {dropped} line(s) logged "
                                  f"after step {done}, which the resumed run logs again")
    return str(chosen)


def trim_metrics(path: str, done: int) -> int:
    """Keep the metrics lines up to step ``done`` (and none torn by a kill); returns how many
    went. The file is replaced whole, so a kill meanwhile loses nothing."""
    target = Path(path)
    if not target.is_file():
        return 0
    try:
        lines = target.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    except OSError as exc:
        raise CaitoolError(f"--metrics {path}: cannot read ({exc.strerror or exc})") from None
    kept = []
    for line in lines:
        record = _read_line(line)
        if record is None:  # a line torn by the kill
            continue
        if isinstance(record.get("step"), int) and record["step"] > done:
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    if kept == lines:
        return 0
    try:
        with replacing(target) as partial:
            partial.write_text("".join(kept), encoding="utf-8")
    except OSError as exc:
        raise CaitoolError(f"--metrics {path}: cannot write there ({exc.strerror or exc})") from None
    return len(lines) - len(kept)


def _read_line(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def restore(trainer: Any, checkpoint: str | None) -> None:
    """Give a resumed trainer the token count its checkpoint had reached (TRL's SFT and DPO
    trainers keep it in an attribute that no checkpoint saves)."""
    if checkpoint is None or not hasattr(trainer, "_total_train_tokens"):
        return
    marker = _read_json(Path(checkpoint) / MARKER)
    if isinstance(marker, dict) and isinstance(marker.get("num_tokens"), (int, float)):
        trainer._total_train_tokens = marker["num_tokens"]
