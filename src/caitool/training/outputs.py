"""Where a training command writes, checked before any data is read or model loaded: the
output directory (the model, its checkpoints) and the metrics file. A place that cannot be
written is one line naming it, not an error about something else once the work is done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError
from caitool.io.output import check_outputs, check_writable

# What a caitool training run leaves in its -o directory (a model's summary, checkpoints, a
# checkpoint's marker): a directory holding one of them may be trained into again.
OWN_ENTRIES = ("caitool_training.json", "checkpoints", "snapshots", "caitool_checkpoint.json")


def check(flags: Any) -> None:
    check_directory(flags.output, "-o")
    check_ours(flags.output, "-o")
    model = getattr(flags, "model", None)
    if model and os.path.isdir(model) and os.path.isdir(flags.output) \
            and os.path.samefile(model, flags.output):
        raise CaitoolError(f"-o {flags.output} is the model trained from (-m): its weights "
                           "would be replaced; write the trained model to another directory")
    check_writable(flags.metrics, "--metrics")


def check_inputs(flags: Any, inputs: list[str]) -> None:
    """The metrics file is none of the files read (the data, --config)."""
    check_outputs([("--metrics", flags.metrics)],
                  [("", path) for path in inputs] + [("--config", getattr(flags, "config", None))])


def check_ours(path: str, flag: str = "-o") -> None:
    """Refuse a directory that holds the user's own files: the model and its checkpoints
    would be written in among them, and a later run's clean-up could take them."""
    target = Path(path).expanduser()
    if not target.is_dir():
        return
    entries = [entry.name for entry in target.iterdir()
               if not entry.name.startswith(".caitool-")]
    if entries and not any(name in OWN_ENTRIES for name in entries):
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise CaitoolError(f"{flag} {path}: a directory that holds other files ({shown}) and "
                           "no caitool model or checkpoint; give a new or empty directory")


def check_directory(path: str, flag: str = "-o") -> None:
    """Fail now if ``path`` cannot become a directory of files: it is something else, a
    folder on its way is a file, or the place refuses new entries. Creates nothing that
    stays."""
    target = Path(path).expanduser()
    where = f"{flag} {path}"
    if target.exists() and not target.is_dir():
        raise CaitoolError(f"{where}: not a directory")
    folder = target
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CaitoolError(f"{where}: {folder} is a file, not a directory")
    try:
        # The real test (permissions, read-only file systems, /proc): make one, remove it.
        if folder == target:
            handle, probe = tempfile.mkstemp(prefix=".caitool-probe-", dir=folder)
            os.close(handle)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".caitool-probe-", dir=folder))
    except OSError as exc:
        raise CaitoolError(f"{where}: cannot write there ({exc.strerror or exc})") from None


def written_under(exc: OSError, directory: str) -> bool:
    """Whether ``exc`` is about a path inside ``directory`` (writing the model or a
    checkpoint failed, rather than reading something)."""
    name = getattr(exc, "filename", None)
    if not name:
        return False
    try:
        return Path(os.path.abspath(name)).is_relative_to(os.path.abspath(directory))
    except (TypeError, ValueError):
        return False
