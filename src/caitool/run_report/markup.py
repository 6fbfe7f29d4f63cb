"""Small HTML pieces: tables, numbers, and records with their revisions' changes marked as
``caitool show`` marks them (the same word diff, drawn as ``<del>`` and ``<ins>``)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from caitool.changes import DELETED, INSERTED, word_diff
from caitool.view import as_text

# Characters of one field drawn in the sample (the tables count every record whole).
FIELD_LIMIT = 4000


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def interval(ci: Any, as_percent: bool = True) -> str:
    if not isinstance(ci, list) or len(ci) != 2 or not all(isinstance(v, (int, float)) for v in ci):
        return "–"
    if as_percent:
        return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%"
    return f"{ci[0]:.1f} to {ci[1]:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "",
          numeric_from: int = 1) -> str:
    """A table; cells are text (escaped here) and columns from ``numeric_from`` on align right."""
    head = "".join(f'<th scope="col"{_right(i, numeric_from)}>{escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{_right(i, numeric_from)}>{_cell(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _right(index: int, numeric_from: int) -> str:
    return ' class="num"' if index >= numeric_from else ""


def _cell(value: Any) -> str:
    return value.html if isinstance(value, Raw) else number(value)


class Raw:
    """Markup already built (and escaped) that a table cell takes as it is."""

    def __init__(self, html: str):
        self.html = html


def clipped(text: str, limit: int = FIELD_LIMIT) -> str:
    if len(text) <= limit:
        return escape(text)
    return escape(text[:limit]) + f'<span class="note"> … ({len(text) - limit:,} more characters)</span>'


def marked_changes(old: str, new: str) -> str:
    """``new`` with the words removed from ``old`` struck out and the added ones marked."""
    diff = word_diff(old[:FIELD_LIMIT], new[:FIELD_LIMIT])
    plain, out, at = diff.plain, [], 0
    for span in sorted(diff.spans, key=lambda s: s.start):
        if span.start > at:
            out.append(escape(plain[at:span.start]))
        piece = escape(plain[span.start:span.end])
        if span.style == DELETED:
            out.append(f"<del>{piece}</del>")
        elif span.style == INSERTED:
            out.append(f"<ins>{piece}</ins>")
        else:
            out.append(f'<span class="note">{piece}</span>')
        at = max(at, span.end)
    out.append(escape(plain[at:]))
    if len(new) > FIELD_LIMIT:
        out.append(f'<span class="note"> … ({len(new) - FIELD_LIMIT:,} more characters)</span>')
    return "".join(out)


def prompt_text(record: dict[str, Any]) -> str:
    messages = record.get("messages")
    if isinstance(messages, list):
        turns = [f"{m.get('role', '?')}: {as_text(m.get('content', ''))}" for m in messages
                 if isinstance(m, dict)]
        return "\n\n".join(turns)
    prompt = record.get("prompt")
    return as_text(prompt) if prompt is not None else ""


def supervised_record(record: dict[str, Any]) -> str:
    """One record of the supervised stage as a ``<details>`` block: prompt, first answer,
    and each round's principle, critique and revision with its changes marked."""
    revisions = [r for r in record.get("revisions") or [] if isinstance(r, dict)]
    principles = sorted({str(r.get("principle", "?"))[:200] for r in revisions})
    previous = as_text(record.get("initial_response", ""))
    rounds = []
    for number_, entry in enumerate(revisions, start=1):
        revision = entry.get("revision")
        critique = entry.get("critique")
        critique_html = (clipped(as_text(critique)) if critique is not None
                         else '<span class="note">(none: revised directly)</span>')
        if revision is None:
            body = '<span class="note">(not revised)</span>'
        else:
            body = marked_changes(previous, as_text(revision))
            previous = as_text(revision)
        rounds.append(f'<div class="round"><h4>round {number_} · principle '
                      f'<code>{escape(str(entry.get("principle", "?"))[:200])}</code></h4>'
                      f'<p class="label">critique</p><p class="text">{critique_html}</p>'
                      f'<p class="label">revision (changes from the previous version)</p>'
                      f'<p class="text">{body}</p></div>')
    summary = clipped(prompt_text(record), 160).replace("\n", " ")
    data = escape(" ".join(f"|{p}|" for p in principles), quote=True)
    return (f'<details class="record" data-principles="{data}"><summary><code>'
            f'{escape(str(record.get("id", "?"))[:200])}</code> {summary}</summary>'
            f'<p class="label">prompt</p><p class="text">{clipped(prompt_text(record))}</p>'
            f'<p class="label">initial response</p><p class="text">'
            f'{clipped(as_text(record.get("initial_response", "")))}</p>{"".join(rounds)}</details>')


def answer_pair(prompt: str, a: tuple[str, str], b: tuple[str, str], note: str) -> str:
    """Two systems' answers to one prompt, side by side where the window is wide."""
    return (f'<details class="record"><summary>{escape(note)}</summary>'
            f'<p class="label">prompt</p><p class="text">{clipped(prompt)}</p><div class="pair">'
            f'<div><p class="label">{escape(a[0])}</p><p class="text">{clipped(a[1])}</p></div>'
            f'<div><p class="label">{escape(b[0])}</p><p class="text">{clipped(b[1])}</p></div>'
            f'</div></details>')
