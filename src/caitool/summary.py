"""What a file of records amounts to, on one screen: ``caitool show --summary``.

For the supervised stage: how many responses the revisions changed, their length before and
after, and which principles were used; for preferences: how decided the labels are; for any
file: how many records of each kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

Record = dict[str, Any]


def _label(text: str, limit: int = 80) -> str:
    """A principle's id as the table shows it: a record may hold any string there."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Words are counted a slice at a time: splitting a 50 MB response whole would hold millions
# of strings at once.
_SLICE = 1 << 20


def words(text: Any) -> int:
    if not isinstance(text, str):
        return 0
    count = 0
    for start in range(0, len(text), _SLICE):
        part = text[start:start + _SLICE]
        count += len(part.split())
        if start and not text[start - 1].isspace() and not part[0].isspace():
            count -= 1  # a word cut in two by the slice was counted twice
    return count


@dataclass
class Summary:
    kinds: Counter = field(default_factory=Counter)
    revised: int = 0
    changed: int = 0
    rounds: Counter = field(default_factory=Counter)
    principles: Counter = field(default_factory=Counter)
    words_before: int = 0
    words_after: int = 0
    preferences: int = 0
    ties: int = 0
    p_chosen: float = 0.0

    def add(self, record: Record, kind: str) -> None:
        self.kinds[kind] += 1
        revisions = record.get("revisions")
        initial = record.get("initial_response")
        if kind == "supervised" and isinstance(revisions, list) and isinstance(initial, str):
            final = revisions[-1].get("revision") if revisions and isinstance(revisions[-1], dict) else None
            if isinstance(final, str):
                self.revised += 1
                self.changed += final.strip() != initial.strip()
                self.words_before += words(initial)
                self.words_after += words(final)
            self.rounds[len(revisions)] += 1
            self.principles.update(str(r.get("principle")) for r in revisions if isinstance(r, dict))
        p = record.get("p_chosen")
        if kind == "preference" and isinstance(p, (int, float)) and not isinstance(p, bool):
            self.preferences += 1
            self.p_chosen += float(p)
            self.ties += bool(record.get("tie"))


def summarize(records: Iterable[Record], kind_of) -> Summary:
    summary = Summary()
    for record in records:
        summary.add(record, kind_of(record))
    return summary


def table(summary: Summary, label: str) -> Group:
    out = Table(show_header=False)
    out.add_column(style="bold")
    out.add_column()
    out.add_row("records", ", ".join(f"{n} {kind}" for kind, n in summary.kinds.most_common()))
    if summary.revised:
        n = summary.revised
        out.add_row("changed by revision", f"{summary.changed} of {n} responses")
        out.add_row("mean length (words)",
                    f"{summary.words_before / n:.1f} initial -> {summary.words_after / n:.1f} revised")
        out.add_row("rounds", ", ".join(f"{k}: {v}" for k, v in sorted(summary.rounds.items())))
        out.add_row("principles", ", ".join(f"{_label(p)} ({c})"
                                            for p, c in summary.principles.most_common(6)))
    if summary.preferences:
        out.add_row("mean p_chosen", f"{summary.p_chosen / summary.preferences:.3f} over "
                                     f"{summary.preferences} pairs ({summary.ties} ties)")
    return Group(Text(f"summary  ·  {label}", style="bold"), out)
