"""What a run directory holds, read with caitool's own readers.

Only the names that ``make all``, ``make smoke`` and ``make demo`` write are looked at (no
walk through the tree, so a link that loops or a huge foreign directory costs nothing). A
line that does not parse is a ``file:line`` warning and leaves that file's section marked
incomplete; a file that cannot be read at all is one warning, and its section is left out.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.io.jsonl import iter_records

COMMAND = "report"
# Bad lines named one by one per file; past this, one line says how many more there were, so
# a file of garbage does not bury the terminal.
BAD_LINES_NAMED = 20
# A JSON summary (eval.json, judge-accuracy.json) is small; anything far larger is not one.
JSON_LIMIT = 64 << 20
RL_METHODS = ("ppo", "rloo", "grpo", "dpo")
# Entries looked at for the timeline: a run has a few dozen; a foreign directory may have millions.
TIMELINE_NAMES = 500
_ROUND = re.compile(r"^round(\d+)\.jsonl$")
_ANSWERS = re.compile(r"^answers-(.+)\.jsonl$")


@dataclass
class Problems:
    """Every warning the report gives, in order, and the files each concerned."""

    messages: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    quiet: bool = False

    def add(self, message: str, name: str | None = None) -> None:
        if message in self.messages:  # a file read twice (its first record, then all) says it once
            return
        self.messages.append(message)
        if name:
            self.files.add(name)
        if not self.quiet:
            console.warn(COMMAND, message)

    def about(self, *names: str) -> list[str]:
        """The names among ``names`` that had a problem."""
        return [n for n in names if n in self.files]


class RunDir:
    """One run directory: which stage files are there, and their contents read safely."""

    def __init__(self, path: str | Path, problems: Problems):
        self.path = Path(path)
        self.problems = problems
        if not self.path.is_dir():
            why = "no such directory" if not os.path.lexists(self.path) else "not a directory"
            if os.path.islink(self.path) and not self.path.exists():
                why = "a link that leads nowhere (or to itself)"
            raise CaitoolError(f"{path}: {why}")
        try:
            self.names = {entry.name for entry in os.scandir(self.path)}
        except OSError as exc:
            raise CaitoolError(f"{path}: cannot list it ({exc.strerror or exc})") from None

    def has(self, name: str) -> bool:
        """Whether ``name`` is there as something to read; a link that loops or leads
        nowhere, or a directory where a file belongs, is a warning."""
        first = name.split("/")[0]
        if first not in self.names:
            return False
        target = self.path / name
        if not os.path.lexists(target):
            return False
        if not target.exists():
            if name not in self.problems.files:  # said once, however often it is asked for
                self.problems.add(f"{target}: a link that leads nowhere (or to itself); left out",
                                  name)
            return False
        return True

    def file(self, name: str) -> Path | None:
        if not self.has(name):
            return None
        target = self.path / name
        if not target.is_file():
            if name not in self.problems.files:
                self.problems.add(f"{target}: not a file; left out", name)
            return None
        return target

    def rounds(self) -> list[int]:
        return sorted(int(m[1]) for n in self.names if (m := _ROUND.match(n)))

    def answer_files(self) -> dict[str, str]:
        """System name (as in the file name) -> answers file, in name order."""
        return {m[1]: n for n in sorted(self.names) if (m := _ANSWERS.match(n))}

    def rl_method(self) -> str | None:
        for method in RL_METHODS:
            if f"{method}-metrics.jsonl" in self.names or (self.path / method / "config.json").is_file():
                return method
        return None

    def records(self, name: str) -> Iterator[dict[str, Any]]:
        """Every record of JSONL file ``name`` that parses; each bad line a warning."""
        target = self.file(name)
        if target is None:
            return
        bad = 0

        def skipped(error: InputError) -> None:
            nonlocal bad
            bad += 1
            if bad <= BAD_LINES_NAMED:
                self.problems.add(f"{error}; line left out", name)

        try:
            for _, record in iter_records(str(target), skip_invalid=True, on_skip=skipped):
                yield record
        except CaitoolError as exc:
            self.problems.add(f"{exc}; the rest of it left out", name)
        except OSError as exc:
            self.problems.add(f"{target}: cannot read it ({exc.strerror or exc}); left out", name)
        if bad > BAD_LINES_NAMED:
            self.problems.add(f"{target}: {bad - BAD_LINES_NAMED} more bad line(s) left out", name)

    def json(self, name: str) -> dict[str, Any] | None:
        """A JSON summary file as a dict, or None with a warning saying why not."""
        target = self.file(name)
        if target is None:
            return None
        try:
            if target.stat().st_size > JSON_LIMIT:
                self.problems.add(f"{target}: over {JSON_LIMIT >> 20} MB, not a summary; left out",
                                  name)
                return None
            data = json.loads(target.read_text(encoding="utf-8"))
        except OSError as exc:
            self.problems.add(f"{target}: cannot read it ({exc.strerror or exc}); left out", name)
            return None
        except UnicodeDecodeError as exc:
            self.problems.add(f"{target}: invalid UTF-8 (byte {exc.start}); left out", name)
            return None
        except json.JSONDecodeError as exc:
            self.problems.add(f"{target}:{exc.lineno}: invalid JSON ({exc.msg}); left out", name)
            return None
        except (RecursionError, ValueError):
            self.problems.add(f"{target}: JSON this report cannot read; left out", name)
            return None
        if not isinstance(data, dict):
            self.problems.add(f"{target}: expected a JSON object, got {type(data).__name__}; "
                              "left out", name)
            return None
        return data

    def metrics(self, name: str) -> list[dict[str, Any]]:
        """A trainer's metrics lines (small: one per logging step)."""
        return list(self.records(name))

    def wrong_kind(self, name: str, count: int, expected: str) -> None:
        self.problems.add(f"{self.path / name}: {count} record(s) are not {expected}; "
                          "left out", name)

    def finished(self) -> list[tuple[str, float]]:
        """(name, modification time) of the stage outputs, oldest first: the run's timeline."""
        out = []
        for name in sorted(self.names)[:TIMELINE_NAMES]:
            target = self.path / name
            if name.startswith(".") or name.endswith((".part", ".html")):  # not a stage's
                continue
            if (target / "config.json").is_file():
                target = target / "config.json"
            try:
                if target.is_file():
                    out.append((name, target.stat().st_mtime))
            except OSError:
                continue
        return sorted(out, key=lambda item: item[1])
