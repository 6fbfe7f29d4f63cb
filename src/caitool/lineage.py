"""Where a model and its data came from: the chain that says who labelled what.

Records carry ``provenance`` (which command, which model); a model directory that caitool
trained carries ``caitool_training.json`` with its base model and, under ``data``, the
provenance its training files carried (:func:`of_records`). :func:`follow` walks that chain
back from a model: through its base, the models that wrote its data and the reward model or
judge it was trained against, to the models (or people) who labelled its preferences.

``caitool eval`` asks this of every system, so that a system graded by the very model that
labelled its training data is marked: its gain is partly the judge agreeing with itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUMMARY = "caitool_training.json"
# The commands whose model decided a preference label, and those whose model wrote text.
LABELLING = ("compare",)
WRITING = ("generate", "critique", "revise", "red-team")
PEOPLE = "people"
# Enough for any real chain (base -> SFT -> RM -> RL); a loop of links is cut here.
MAX_DEPTH = 12
DISTINCT = 8  # distinct settings kept per command and file (a file is usually one run)
KEPT = ("backend", "model", "constitution", "format", "file")


def of_records(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The distinct provenance entries of ``records``, per command (a few fields each)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        provenance = record.get("provenance")
        if not isinstance(provenance, dict):
            continue
        for command, info in provenance.items():
            if not isinstance(info, dict):
                continue
            kept = {k: info[k] for k in KEPT if isinstance(info.get(k), (str, int, float))}
            seen = found.setdefault(str(command), {})
            key = json.dumps(kept, sort_keys=True)
            if key not in seen and len(seen) < DISTINCT:
                seen[key] = kept
    return {command: list(entries.values()) for command, entries in found.items()}


def identity(model: str) -> str:
    """One name per model: a local path as its real path, anything else (a hub id, a
    built-in name) as it is written."""
    expanded = os.path.expanduser(model)
    return os.path.realpath(expanded) if os.path.exists(expanded) else model


@dataclass
class Chain:
    """What :func:`follow` found behind a model."""

    trained: list[str] = field(default_factory=list)      # caitool model dirs on the way
    written_by: set[str] = field(default_factory=set)     # models that wrote training text
    labelled_by: set[str] = field(default_factory=set)    # models (or people) that labelled
    unknown: list[str] = field(default_factory=list)      # training files with no provenance

    def to_dict(self) -> dict[str, Any]:
        return {"trained": self.trained, "written_by": sorted(self.written_by),
                "labelled_by": sorted(self.labelled_by), "unknown_data": self.unknown}


def training_summary(model: str) -> dict[str, Any] | None:
    path = Path(os.path.expanduser(model)) / SUMMARY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def follow(models: Iterable[str]) -> Chain:
    """The chain behind ``models`` (the models that wrote a system's answers)."""
    chain = Chain()
    seen: set[str] = set()
    todo = [(identity(m), 0) for m in models]
    while todo:
        model, depth = todo.pop()
        if model in seen or depth > MAX_DEPTH:
            continue
        seen.add(model)
        summary = training_summary(model)
        if summary is None:
            continue
        chain.trained.append(model)
        # A snapshot's data is its run's: the run's summary (written at its end) tells it.
        linked = [summary.get("base_model"), summary.get("reward_model"), summary.get("snapshot_of")]
        if summary.get("judge"):  # RL with the feedback model's verdict as the reward
            chain.labelled_by.add(identity(str(summary["judge"])))
            linked.append(summary["judge"])
        data = summary.get("data")
        if summary.get("snapshot_of"):
            data = {}
        elif not isinstance(data, dict):
            chain.unknown += [str(f) for f in summary.get("inputs") or []]
            data = {}
        for file, commands in data.items():
            if not commands:
                chain.unknown.append(str(file))
            for command, entries in (commands or {}).items():
                for entry in entries:
                    _add(chain, command, entry, linked)
        todo += [(identity(str(m)), depth + 1) for m in linked if m]
    return chain


def _add(chain: Chain, command: str, entry: dict[str, Any], linked: list[Any]) -> None:
    if command == "import":
        # The public preference sets were labelled by people (hh-rlhf, PKU-SafeRLHF).
        chain.labelled_by.add(f"{PEOPLE} ({entry.get('format', 'imported')})")
        return
    model = entry.get("model")
    if not isinstance(model, str):
        return
    if command in LABELLING:
        chain.labelled_by.add(identity(model))
    elif command in WRITING:
        chain.written_by.add(identity(model))
        linked.append(model)


def generators(records: Iterable[dict[str, Any]],
               steps: tuple[str, ...] = ("revise", "generate")) -> set[str]:
    """The models that wrote a system's responses: the first of ``steps`` each record has."""
    found: set[str] = set()
    for record in records:
        provenance = record.get("provenance")
        if not isinstance(provenance, dict):
            continue
        for command in steps:
            info = provenance.get(command)
            if isinstance(info, dict) and isinstance(info.get("model"), str):
                found.add(info["model"])
                break
    return found
