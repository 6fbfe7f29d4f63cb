"""A judge's accuracy on multiple-choice evaluations, in the format the paper released.

The paper chose its feedback models by how often they pick the right answer to questions
like the ones they judge. A row is one question and its options::

    {"prompt": "...\\n\\nThe answer is:", "corrects": [" (A)"], "incorrects": [" (B)", " (C)"]}

Each option is scored by its log-probability after the prompt, all of a row's options in one
``score()`` request; the row is right when a correct option scores highest. When k options tie
for the top, the row earns the correct share of them over k (one correct option tied with one
incorrect one earns 1/2), which is what picking among the tied options at random earns on
average. A file's accuracy is the mean over its rows, with a bootstrap interval over rows.

Rows may also carry ``text_correct`` and ``text_incorrect``: whole transcripts (a string, or a
list of them) for a reward model to score instead (:mod:`.reward_scoring`); the same rule
decides them. Each mode scores the rows that carry its fields and counts the others as
skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from rich import box
from rich.table import Table

from caitool.backends.base import Backend, RequestsFailed
from caitool.errors import CaitoolError, InputError
from caitool.io.jsonl import iter_records, source_name
from caitool.render import Prompt
from caitool.stages.evaluate.statistics import bootstrap_ci

Record = dict[str, Any]
OPTION_FIELDS = ("prompt", "corrects", "incorrects")
TEXT_FIELDS = ("text_correct", "text_incorrect")
# Candidates this close to the best score tie with it: differences of a millionth of a nat
# (or of a reward) are rounding, not a preference.
TIE_TOLERANCE = 1e-6
LEVEL = 0.95


# -- rows ----------------------------------------------------------------------------------


def _strings(value: Any, name: str, allow_one: bool) -> str | None:
    """Why ``value`` is not a non-empty list of non-empty strings (or one such string)."""
    if allow_one and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        kind = "a string or a non-empty list of strings" if allow_one else "a non-empty list of strings"
        return f"'{name}' must be {kind}"
    if not all(isinstance(item, str) and item.strip() for item in value):
        return f"'{name}' must hold non-empty strings only"
    return None


def check_row(record: Record) -> str | None:
    """Why ``record`` is not a multiple-choice row, or None: it needs ``prompt``, ``corrects``
    and ``incorrects``, or ``text_correct`` and ``text_incorrect``, or both groups."""
    groups = [[name for name in group if name in record] for group in (OPTION_FIELDS, TEXT_FIELDS)]
    if not any(groups):
        return ("missing 'prompt', 'corrects' and 'incorrects' (or 'text_correct' and "
                "'text_incorrect' for a reward model)")
    for present, group in zip(groups, (OPTION_FIELDS, TEXT_FIELDS), strict=True):
        missing = [name for name in group if name not in present]
        if present and missing:
            return f"has '{present[0]}' but no '{missing[0]}'"
    if groups[0]:
        prompt = record["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            return "'prompt' must be a non-empty string (the whole question, ending with its answer cue)"
        problem = _strings(record["corrects"], "corrects", False) or \
            _strings(record["incorrects"], "incorrects", False)
        if problem:
            return problem
        options = record["corrects"] + record["incorrects"]
        repeated = next((o for i, o in enumerate(options) if o in options[:i]), None)
        if repeated is not None:
            return f"the option {repeated!r} is given twice"
    if groups[1]:
        return _strings(record["text_correct"], "text_correct", True) or \
            _strings(record["text_incorrect"], "text_incorrect", True)
    return None


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclass
class Row:
    """One checked row: where it is, its question and options, its transcripts."""

    line: int
    prompt: str | None = None
    corrects: list[str] = field(default_factory=list)
    incorrects: list[str] = field(default_factory=list)
    texts_correct: list[str] = field(default_factory=list)
    texts_incorrect: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, line: int, record: Record) -> Row:
        row = cls(line)
        if "prompt" in record:
            row.prompt = record["prompt"]
            row.corrects, row.incorrects = list(record["corrects"]), list(record["incorrects"])
        if "text_correct" in record:
            row.texts_correct = _listed(record["text_correct"])
            row.texts_incorrect = _listed(record["text_incorrect"])
        return row

    @property
    def has_options(self) -> bool:
        return self.prompt is not None

    @property
    def has_texts(self) -> bool:
        return bool(self.texts_correct)

    def options(self) -> list[str]:
        """The options in the order of their text, " (A)" before " (B)", whichever are correct:
        a judge that always answers the same letter then scores the share of rows whose
        answer is that letter, wherever the file lists it."""
        return sorted(self.corrects + self.incorrects)


@dataclass
class EvalFile:
    path: str
    rows: list[Row]
    invalid: int = 0             # bad lines left out under --skip-invalid


def read_file(path: str, skip_invalid: bool = False,
              on_skip: Callable[[InputError], None] | None = None) -> EvalFile:
    """All rows of ``path`` (``-`` is stdin), checked; a bad line is ``file:line: problem``."""
    skipped: list[InputError] = []

    def skip(error: InputError) -> None:
        skipped.append(error)
        if on_skip:
            on_skip(error)

    rows = [Row.of(line, record)
            for line, record in iter_records(path, check_row, skip_invalid, skip)]
    if not rows and not skipped:
        raise CaitoolError(f"{source_name(path)}: no rows")
    return EvalFile(source_name(path), rows, len(skipped))


# -- deciding a row ------------------------------------------------------------------------


@dataclass
class Scored:
    """A row's candidates scored: the correct ones' scores, the incorrect ones', and what
    the row earns."""

    line: int
    correct: list[float]
    incorrect: list[float]
    labels: list[str] | None = None      # the options, correct ones first (judge mode)

    @property
    def tied(self) -> int:
        """How many candidates share the top score."""
        return len(_top(self.correct + self.incorrect))

    @property
    def credit(self) -> float:
        """1 when a correct candidate scores highest, 0 when an incorrect one does; with k
        tied for the top, the correct share of them over k."""
        top = _top(self.correct + self.incorrect)
        return sum(1 for i in top if i < len(self.correct)) / len(top)

    def to_dict(self, source: str) -> Record:
        out: Record = {"file": source, "line": self.line, "credit": self.credit,
                       "correct_scores": _finite(self.correct),
                       "incorrect_scores": _finite(self.incorrect)}
        if self.labels is not None:
            out["top"] = [self.labels[i] for i in _top(self.correct + self.incorrect)]
        return out


def _finite(scores: list[float]) -> list[float | None]:
    """JSON has no infinities: a score that is not a number (an option a sampling server
    never saw) is written as null."""
    return [s if math.isfinite(s) else None for s in scores]


def _top(scores: Sequence[float]) -> list[int]:
    """Indices of the candidates tied for the best score (NaN counts as the worst)."""
    clean = [-math.inf if math.isnan(s) else s for s in scores]
    best = max(clean)
    return [i for i, s in enumerate(clean) if s >= best - TIE_TOLERANCE]


# -- scoring with a judge ------------------------------------------------------------------


def chat_prompt(question: str) -> Prompt:
    """The question as a user turn, and its last line (the answer cue, "The answer is:") as
    the start of the assistant's reply, so the options continue the reply."""
    body, newline, cue = question.rstrip().rpartition("\n")
    if not newline:
        return Prompt.chat([{"role": "user", "content": question.strip()}])
    return Prompt.chat([{"role": "user", "content": body.strip()}], assistant_prefix=cue.strip())


def judge_prompt(row: Row, as_chat: bool) -> Prompt:
    assert row.prompt is not None
    return chat_prompt(row.prompt) if as_chat else Prompt.raw(row.prompt)


@dataclass
class FileResult:
    path: str
    scored: list[Scored]
    skipped: int = 0             # rows without this mode's fields
    invalid: int = 0
    failed: int = 0              # rows the backend could not score
    sizes: list[int] = field(default_factory=list)    # candidates per scored row


def score_with_judge(backend: Backend, file: EvalFile, as_chat: bool, batch_size: int = 16,
                     advance: Callable[[int], None] = lambda n: None,
                     methods: set[str] | None = None) -> FileResult:
    """Score every row with options: all of a batch's rows in one ``score()`` call."""
    rows = [row for row in file.rows if row.has_options]
    result = FileResult(file.path, [], skipped=len(file.rows) - len(rows), invalid=file.invalid)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        options = [row.options() for row in chunk]
        try:
            scores: list[Any] = backend.score(
                [judge_prompt(r, as_chat).serving(f"{file.path}:{r.line}", "judge") for r in chunk],
                options)
        except RequestsFailed as exc:
            scores = exc.results
        for row, listed, score in zip(chunk, options, scores, strict=True):
            if score is None:
                result.failed += 1
                continue
            if methods is not None:
                methods.add(score.method)
            by_option = dict(zip(listed, score.logprobs, strict=True))
            result.scored.append(Scored(row.line, [by_option[o] for o in row.corrects],
                                        [by_option[o] for o in row.incorrects],
                                        labels=row.corrects + row.incorrects))
            result.sizes.append(len(listed))
        advance(len(chunk))
    return result


def rows_to_score(files: Sequence[EvalFile], reward_model: bool) -> int:
    return sum(1 for f in files for row in f.rows
               if (row.has_texts if reward_model else row.has_options))


# -- the summary ---------------------------------------------------------------------------


def accuracy(scored: Sequence[Scored], sizes: Sequence[int], samples: int, seed: int,
             level: float = LEVEL) -> Record:
    """Accuracy (mean credit) with its bootstrap interval, and what to read it against."""
    credits = [s.credit for s in scored]
    n = len(credits)
    ci = bootstrap_ci(credits, samples, seed, level)
    counts: dict[str, int] = {}
    for size in sizes:
        counts[str(size)] = counts.get(str(size), 0) + 1
    return {
        "rows": n,
        "accuracy": _round(sum(credits) / n) if n else None,
        "ci": None if ci is None else [_round(ci[0]), _round(ci[1])],
        "correct": _round(sum(credits)),
        # What answering at random earns: the correct share of each row's candidates.
        "chance": _round(sum(len(s.correct) / (len(s.correct) + len(s.incorrect))
                             for s in scored) / n) if n else None,
        "ties": sum(1 for s in scored if s.tied > 1),
        "candidates": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))),
    }


def at_chance(entry: Record) -> bool:
    """Whether an accuracy is indistinguishable from answering at random: its interval holds
    chance (without an interval, whether it is no better than chance)."""
    accuracy_, chance, ci = entry.get("accuracy"), entry.get("chance"), entry.get("ci")
    if accuracy_ is None or chance is None:
        return False
    return ci[0] <= chance <= ci[1] if ci else accuracy_ <= chance


def summarize(results: Sequence[FileResult], samples: int = 1000, seed: int = 0,
              level: float = LEVEL) -> Record:
    files = []
    for result in results:
        files.append({"file": result.path,
                      **accuracy(result.scored, result.sizes, samples, seed, level),
                      "skipped": result.skipped, "invalid": result.invalid,
                      "failed": result.failed})
    summary: Record = {"files": files}
    if len(results) > 1:
        summary["overall"] = {
            **accuracy([s for r in results for s in r.scored],
                       [n for r in results for n in r.sizes], samples, seed, level),
            "skipped": sum(r.skipped for r in results), "invalid": sum(r.invalid for r in results),
            "failed": sum(r.failed for r in results)}
    summary["bootstrap"] = {"samples": samples, "level": level, "seed": seed}
    return summary


def _round(value: float) -> float:
    return round(float(value), 4)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(summary: Record, title: str) -> Table:
    """Per file: rows scored, accuracy and its interval, chance, ties and rows left out."""
    level = summary["bootstrap"]["level"]
    out = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    out.add_column("file", overflow="fold")
    for name in ("rows", "accuracy", f"{100 * level:.0f}% CI", "chance", "ties", "left out"):
        out.add_column(name, justify="right", no_wrap=True)
    # File names without their folders where those are enough to tell the files apart
    # (the JSON keeps the paths), so that the table fits a terminal.
    names = [PurePath(f["file"]).name for f in summary["files"]]
    if len(set(names)) < len(names):
        names = [f["file"] for f in summary["files"]]
    entries = list(zip(names, summary["files"], strict=True))
    if "overall" in summary:
        entries.append(("all files", summary["overall"]))
    for name, entry in entries:
        ci = entry["ci"]
        interval = "-" if ci is None else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"
        left_out = entry["skipped"] + entry["invalid"] + entry["failed"]
        out.add_row(name, str(entry["rows"]), _percent(entry["accuracy"]), interval,
                    _percent(entry["chance"]), str(entry["ties"]), str(left_out))
    return out
