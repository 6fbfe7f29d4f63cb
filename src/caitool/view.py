"""Rendering records for a person to read in a terminal.

Every record kind that caitool writes has a view: prompts, generated responses, the
supervised stage's rounds (principle, critique, and the revision with its changes from the
previous version highlighted word by word), preference pairs with their probabilities, and
training-metric lines (gathered into tables). Anything else is shown as JSON, so no input
that parses as a JSON object makes the viewer fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.pager import Pager as RichPager
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from caitool import schema
from caitool.changes import DELETED as DELETED  # re-exported: how changes are drawn
from caitool.changes import INSERTED as INSERTED
from caitool.changes import word_diff

Record = dict[str, Any]

# Fields a view presents itself; any other field is listed under the record, so nothing the
# record carries is hidden.
_SHOWN = {
    "id", "prompt", "messages", "response", "responses", "initial_response", "revisions",
    "chosen", "rejected", "p_chosen", "judgments", "orders_agree", "tie", "provenance",
}
_METRIC_KEYS = {"step", "global_step", "epoch", "loss", "train_loss", "eval_loss", "reward",
                "learning_rate"}
_ROLE_STYLES = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}
# Characters of one field drawn, and entries of one list field (responses, rounds,
# judgments): a line of many megabytes renders in the time of a page, and what is cut is said.
FIELD_LIMIT = 10_000
ITEM_LIMIT = 20
# Nesting drawn in the JSON view of an unknown record.
DEPTH_LIMIT = 20


def kind(record: Record) -> str:
    """Which view a record gets."""
    if _is_metrics(record):
        return "metrics"
    if "chosen" in record and "rejected" in record:
        return "preference"
    if isinstance(record.get("revisions"), list):
        return "supervised"
    if "responses" in record:
        return "samples"
    if "response" in record:
        return "response"
    if "prompt" in record or "messages" in record:
        return "prompt"
    return "other"


def _is_metrics(record: Record) -> bool:
    if any(key in record for key in ("id", "prompt", "messages", "response", "chosen")):
        return False
    scalar = all(v is None or isinstance(v, (int, float, str, bool)) for v in record.values())
    return scalar and bool(_METRIC_KEYS & record.keys())


# -- pieces --------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A response as text: a string, or the contents of a list of chat messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n\n".join(str(m.get("content", "")) for m in value)
    if isinstance(value, dict) and "content" in value:
        return str(value["content"])
    return json.dumps(value, ensure_ascii=False)


def prompt_panel(record: Record) -> Panel | None:
    """The prompt, where the record has a valid one (a record that only looks like a kind
    is still shown: its fields are listed below it)."""
    if schema.check_prompt(record) is not None:
        return None
    messages = schema.conversation(record)
    if len(messages) == 1 and messages[0]["role"] == "user":
        return Panel(clipped(messages[0]["content"]), title="prompt", title_align="left",
                     border_style="cyan")
    body = Text()
    room = FIELD_LIMIT  # the whole conversation is one field
    for i, message in enumerate(messages):
        if room <= 0:
            body.append(f"\n\n… {len(messages) - i:,} more messages not shown", style="dim italic")
            break
        if i:
            body.append("\n\n")
        body.append(f"{message['role']}: ", style=_ROLE_STYLES.get(message["role"], "bold"))
        body.append_text(clipped(message["content"], room))
        room -= len(message["content"])
    return Panel(body, title="conversation", title_align="left", border_style="cyan")


def clipped(text: str, limit: int = FIELD_LIMIT) -> Text:
    """``text`` up to ``limit`` characters, and a note of how much more there is."""
    body = Text(text[:limit])
    body.append_text(_cut_note(text, limit))
    return body


def _cut_note(text: str, limit: int = FIELD_LIMIT) -> Text:
    if len(text) <= limit:
        return Text()
    return Text(f"\n… {len(text) - limit:,} more characters not shown ({len(text):,} in all)",
                style="dim italic")


def _more(shown: int, total: int, what: str) -> Text:
    return Text(f"… {total - shown:,} more {what} not shown ({total:,} in all)", style="dim italic")


def _bounded(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` for the JSON view: long strings and lists cut, deep nesting elided."""
    if isinstance(value, str):
        if len(value) <= FIELD_LIMIT:
            return value
        return value[:FIELD_LIMIT] + f" … [{len(value) - FIELD_LIMIT:,} more characters not shown]"
    if isinstance(value, (list, dict)) and depth >= DEPTH_LIMIT:
        return "… [nested deeper: not shown]"
    if isinstance(value, list):
        items = [_bounded(item, depth + 1) for item in value[:FIELD_LIMIT // 50]]
        if len(value) > len(items):
            items.append(f"… [{len(value) - len(items):,} more items not shown]")
        return items
    if isinstance(value, dict):
        bounded = {key: _bounded(item, depth + 1)
                   for key, item in list(value.items())[:FIELD_LIMIT // 50]}
        if len(value) > len(bounded):
            bounded["…"] = f"[{len(value) - len(bounded):,} more keys not shown]"
        return bounded
    return value


def text_panel(text: str | Text, title: str, style: str = "bright_black") -> Panel:
    body = text if isinstance(text, Text) else clipped(text)
    if not body.plain.strip():
        body = Text("(empty)", style="dim italic")
    return Panel(body, title=title, title_align="left", border_style=style)


def _compact(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def footer(record: Record, shown: set[str] = _SHOWN) -> Text | None:
    """Other fields, then provenance, as dim lines."""
    lines = Text(style="dim")
    for key, value in record.items():
        if key not in shown:
            lines.append(f"{key}: {_compact(value)}\n")
    provenance = record.get("provenance")
    if isinstance(provenance, dict):
        for step, info in provenance.items():
            detail = (", ".join(f"{k}={_compact(v, 80)}" for k, v in info.items())
                      if isinstance(info, dict) else _compact(info))
            lines.append(f"provenance {step}: {detail}\n")
    elif provenance is not None:
        lines.append(f"provenance: {_compact(provenance)}\n")
    lines.rstrip()
    return lines if lines.plain else None


def _probability(value: Any) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:.3f}" if number else "-"


def _yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


# -- views ---------------------------------------------------------------------------------


def _supervised(record: Record, markers: bool) -> list[RenderableType]:
    parts: list[RenderableType] = []
    revisions = record["revisions"]
    previous = record.get("initial_response")
    if previous is None and not revisions:
        previous = record.get("response")
    if previous is not None:
        parts.append(text_panel(as_text(previous), "initial response"))
        previous = as_text(previous)
    for number, entry in enumerate(revisions, start=1):
        if number > ITEM_LIMIT:
            parts.append(_more(ITEM_LIMIT, len(revisions), "rounds"))
            break
        if not isinstance(entry, dict):
            parts.append(text_panel(_compact(entry, 2000), f"round {number}", "yellow"))
            continue
        body = Text()
        body.append("critique\n", style="bold yellow")
        critique = entry.get("critique")
        body.append_text(clipped(as_text(critique)) if critique is not None else
                         Text("(none: revised directly)" if entry.get("direct") is True else "(none)"))
        body.append("\n\nrevision", style="bold yellow")
        revision = entry.get("revision")
        if revision is None:
            body.append("\n(not revised yet: run 'caitool revise')", style="dim italic")
        elif previous is None:
            body.append("\n")
            body.append_text(clipped(as_text(revision)))
        else:
            body.append(" (changes from the previous version)\n", style="dim")
            new = as_text(revision)
            body.append_text(word_diff(previous[:FIELD_LIMIT], new[:FIELD_LIMIT], markers))
            body.append_text(_cut_note(new))
        if revision is not None:
            previous = as_text(revision)
        principle = _compact(entry.get("principle", "?"), 200)
        parts.append(Panel(body, title=f"round {number} · principle: {principle}",
                           title_align="left", border_style="yellow"))
    response = record.get("response")
    if response is not None and previous is not None and as_text(response) != previous:
        parts.append(text_panel(as_text(response), "response", "green"))
    return parts


def _preference(record: Record) -> list[RenderableType]:
    p_chosen = record.get("p_chosen")
    p_text = f" · p = {_probability(p_chosen)}" if p_chosen is not None else ""
    parts: list[RenderableType] = [
        text_panel(as_text(record["chosen"]), f"chosen{p_text}", "green"),
        text_panel(as_text(record["rejected"]), "rejected", "red"),
    ]
    summary = Text()
    summary.append("p_chosen ", style="bold")
    summary.append(_probability(p_chosen))
    summary.append("   orders agree ", style="bold")
    summary.append(_yes_no(record.get("orders_agree")))
    summary.append("   tie ", style="bold")
    summary.append(_yes_no(record.get("tie")))
    parts.append(summary)
    judgments = record.get("judgments")
    if isinstance(judgments, list) and judgments:
        table = Table("principle", "order", "p_first", title="judgments", title_justify="left")
        for entry in judgments[:ITEM_LIMIT]:
            if isinstance(entry, dict):
                table.add_row(_compact(entry.get("principle", "-"), 200),
                              _compact(entry.get("order", "-"), 20), _probability(entry.get("p_first")))
        parts.append(table)
        if len(judgments) > ITEM_LIMIT:
            parts.append(_more(ITEM_LIMIT, len(judgments), "judgments"))
    return parts


def _samples(record: Record) -> list[RenderableType]:
    responses = record["responses"]
    if not isinstance(responses, list):
        return [text_panel(as_text(responses), "responses", "green")]
    parts: list[RenderableType] = [text_panel(as_text(r), f"response {i} of {len(responses)}", "green")
                                   for i, r in enumerate(responses[:ITEM_LIMIT], start=1)]
    if len(responses) > ITEM_LIMIT:
        parts.append(_more(ITEM_LIMIT, len(responses), "responses"))
    return parts


def render(record: Record, label: str = "", markers: bool = False) -> RenderableType:
    """One record as a rich renderable; ``label`` names where it came from."""
    view = kind(record)
    title = f"{_compact(record['id'], 200)}  ·  {view}" if "id" in record else view
    if label:
        title += f"  ·  {label}"
    parts: list[RenderableType] = [Rule(Text(title, style="bold"), align="left")]
    try:
        body = _body(record, view, markers)
    except (AttributeError, KeyError, TypeError, ValueError):
        # A record that only looks like a known kind: show it as it is rather than fail.
        body = [JSON.from_data(_bounded(record), ensure_ascii=False)]
    parts += body
    return Group(*parts)


def _body(record: Record, view: str, markers: bool) -> list[RenderableType]:
    if view == "other":
        return [JSON.from_data(_bounded(record), ensure_ascii=False)]
    parts: list[RenderableType] = []
    prompt = prompt_panel(record)
    if prompt is not None:
        parts.append(prompt)
    if view == "supervised":
        parts += _supervised(record, markers)
    elif view == "preference":
        parts += _preference(record)
    elif view == "samples":
        parts += _samples(record)
    elif view == "response":
        parts.append(text_panel(as_text(record["response"]), "response", "green"))
    # A prompt that could not be shown as one is listed with the other fields.
    extra = footer(record, _SHOWN if prompt is not None else _SHOWN - {"prompt", "messages"})
    if extra is not None:
        parts.append(extra)
    return parts


def metrics_table(rows: list[Record], label: str = "") -> Table:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    table = Table(title=f"training metrics{f'  ·  {label}' if label else ''}",
                  title_justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(_metric(row.get(column)) for column in columns))
    return table


def _metric(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def render_stream(records: Iterable[tuple[str, Record]], markers: bool = False,
                  ) -> Iterator[RenderableType]:
    """Renderables for ``(label, record)`` pairs; runs of metric lines become one table."""
    metrics: list[Record] = []
    first_label = ""
    for label, record in records:
        if kind(record) == "metrics":
            if not metrics:
                first_label = label
            metrics.append(record)
            continue
        if metrics:
            yield metrics_table(metrics, first_label)
            metrics = []
        yield render(record, label, markers)
    if metrics:
        yield metrics_table(metrics, first_label)


class Pager(RichPager):
    """Pipes the text through $PAGER (else ``less``) itself, rather than through pydoc, which
    refuses to page when stdin is not a terminal: ``... | caitool show`` should page too (the
    pager reads keys from the terminal, as with git)."""

    def show(self, content: str) -> None:
        command = os.environ.get("PAGER") or ("less" if shutil.which("less") else "")
        if not command.strip():
            sys.stdout.write(content)
            return
        env = dict(os.environ)
        # -R passes colours through; -F and -X leave output shorter than a screen in place.
        env.setdefault("LESS", "-FRX")
        try:
            process = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
        except OSError:
            sys.stdout.write(content)
            return
        try:
            assert process.stdin is not None
            process.stdin.write(content.encode("utf-8", errors="replace"))
            process.stdin.close()
        except BrokenPipeError:
            pass  # the reader quit the pager before reaching the end
        while True:
            try:
                process.wait()
                break
            except KeyboardInterrupt:
                continue  # Ctrl-C belongs to the pager (less uses it to stop a search)
