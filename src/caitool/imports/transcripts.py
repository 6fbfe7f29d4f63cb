"""Raw dialogue transcripts (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as chat messages.

A turn starts at a ``Human:`` or ``Assistant:`` marker at the very start of the text or after a
blank line; anything else, single-newline ``Human:`` included, is the turn's text. One regular
expression scan, so a transcript of any length costs time in proportion to its length.
"""

from __future__ import annotations

import re

from caitool.imports.rows import Mismatch
from caitool.schema import Messages

_MARKER = re.compile(r"(?:\A|\n\n)(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse(text: str, field: str) -> Messages:
    """Every turn of ``text`` (the row's ``field``), in order, with its text stripped."""
    marks = list(_MARKER.finditer(text))
    if not any(mark[1] == "Human" for mark in marks):
        raise Mismatch(f"'{field}' has no human turn (expected '\\n\\nHuman: ...' turns)")
    if text[:marks[0].start()].strip():
        raise Mismatch(f"'{field}' has text before its first 'Human:' or 'Assistant:' turn")
    turns = []
    for mark, following in zip(marks, [*marks[1:], None]):
        end = following.start() if following else len(text)
        turns.append({"role": _ROLES[mark[1]], "content": text[mark.end():end].strip()})
    return turns


def _last_human(turns: Messages, field: str) -> int:
    last = max(i for i, turn in enumerate(turns) if turn["role"] == "user")
    if not turns[last]["content"]:
        raise Mismatch(f"the last human turn of '{field}' is empty")
    return last


def conversation(turns: Messages, field: str) -> Messages:
    """The conversation up to and with its last human turn: what the model is to answer."""
    return turns[:_last_human(turns, field) + 1]


def first_request(turns: Messages, field: str) -> str:
    """The text of the first human turn: an attack's opening move."""
    first = next(turn for turn in turns if turn["role"] == "user")
    if not first["content"]:
        raise Mismatch(f"the first human turn of '{field}' is empty")
    return first["content"]


def final_reply(turns: Messages, field: str) -> str:
    """The assistant's answer after the last human turn (several turns there are joined)."""
    replies = [turn["content"] for turn in turns[_last_human(turns, field) + 1:]]
    if not replies or not any(replies):
        raise Mismatch(f"'{field}' has no assistant reply after its last human turn")
    return "\n\n".join(reply for reply in replies if reply)
