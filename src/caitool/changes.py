"""Changes between two versions of a text, word by word, in bounded time.

``difflib.SequenceMatcher`` is quadratic (and worse on repetitive text) in the number of
words it compares. So texts are compared word by word only up to :data:`DIFF_TOKENS`
tokens; past that the common start and end are set apart in linear time and only the
changed middle is compared, and a middle still too long is shown as the new text, said to
be unmarked. A revision of any length is then drawn in a time that does not grow with it.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from rich.text import Text

# Words, runs of whitespace and single punctuation marks: the units that a change is shown in.
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")
# Below this similarity a revision is a rewrite, and marking every word would only be noise.
_REWRITE_RATIO = 0.2
# Tokens (both texts together, whitespace included) compared word by word: some 300 words
# a side, which a response of a few hundred tokens fits and which takes well under a second
# even on text built to be slow.
DIFF_TOKENS = 1200

DELETED = "red strike"
INSERTED = "bold green"


def word_diff(old: str, new: str, markers: bool = False) -> Text:
    """``new`` with the words removed from ``old`` struck out and the added words highlighted.

    With ``markers`` (for output without colour) removals read ``[-old-]`` and additions
    ``{+new+}``, as in ``wdiff``.
    """
    before, after = _TOKENS.findall(old), _TOKENS.findall(new)
    if len(before) + len(after) > DIFF_TOKENS:
        return _long_diff(before, after, markers)
    text = Text()
    words = SequenceMatcher(a=[t for t in before if not t.isspace()],
                            b=[t for t in after if not t.isspace()], autojunk=False)
    if before and after and words.ratio() < _REWRITE_RATIO:
        text.append("(rewritten) ", style="dim italic")
        text.append(new)
        return text
    _marked(text, before, after, markers)
    return text


def _long_diff(before: list[str], after: list[str], markers: bool) -> Text:
    """The common start and end as they are, the changed middle compared word by word if
    it is short enough, else shown as the new text with a note."""
    shortest = min(len(before), len(after))
    start = 0
    while start < shortest and before[start] == after[start]:
        start += 1
    end = 0
    while end < shortest - start and before[-1 - end] == after[-1 - end]:
        end += 1
    middle_before = before[start:len(before) - end]
    middle_after = after[start:len(after) - end]
    text = Text()
    if len(middle_before) + len(middle_after) > DIFF_TOKENS:
        text.append("(changes not marked: too long to compare word by word) ", style="dim italic")
        text.append("".join(after))
        return text
    text.append("".join(after[:start]))
    _marked(text, middle_before, middle_after, markers)
    text.append("".join(after[len(after) - end:]))
    return text


def _marked(text: Text, before: list[str], after: list[str], markers: bool) -> None:
    matcher = SequenceMatcher(a=before, b=after, autojunk=False)
    # (unchanged text, None) or (removed, added); a change separated from the next one by
    # whitespace alone is joined to it, so a replaced phrase reads as one change.
    segments: list[tuple[str, str | None]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            segments.append(("".join(after[j1:j2]), None))
            continue
        removed, added = "".join(before[i1:i2]), "".join(after[j1:j2])
        if (len(segments) >= 2 and segments[-1][1] is None and not segments[-1][0].strip()
                and segments[-2][1] is not None):
            space = segments.pop()[0]
            old_removed, old_added = segments.pop()
            removed = old_removed + space + removed if old_removed or removed else ""
            added = old_added + space + added if old_added or added else ""
        segments.append((removed, added))
    for removed, added in segments:
        if added is None:
            text.append(removed)
            continue
        if removed:
            text.append(f"[-{removed}-]" if markers else removed, style=DELETED)
        if added:
            text.append(f"{{+{added}+}}" if markers else added, style=INSERTED)
