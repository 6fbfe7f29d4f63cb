"""Where a training command writes, checked before any data is read or model loaded: the
output directory (the model, its checkpoints) and the metrics file. A place that cannot be
written is one line naming it, not an error about something else once the work is done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError
from caitool.io.output import check_writable


def check(flags: Any) -> None:
    check_directory(flags.output, "-o")
    check_writable(flags.metrics, "--metrics")


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
