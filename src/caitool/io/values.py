"""What may travel in a record: JSON as RFC 8259 defines it, within limits every command can
hold. Checked when a line is read (so the error names the file and line) and again when a
record is written (so a value a step produced, say a NaN probability, never reaches the
output as text the next command would refuse)."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

# No record needs more; deeper nesting only threatens the recursion of json and of the
# stages that copy records.
MAX_DEPTH = 100

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# A line can hold a lone surrogate only as a \uD800-\uDFFF escape (raw surrogate bytes are
# invalid UTF-8); lines without one are not walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class NotJSON(ValueError):
    """A value JSON has no room for (NaN, Infinity, a number out of range)."""


def _constant(name: str) -> Any:
    raise NotJSON(f"{name} is not valid JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJSON(f"the number {text[:24]} is out of range")
    return value


def loads(text: str) -> Any:
    """``json.loads`` that refuses NaN, Infinity and numbers that overflow to infinity."""
    return json.loads(text, parse_constant=_constant, parse_float=_finite_float)


def dumps(value: Any) -> str:
    """One compact line; ValueError for what is not JSON (see :func:`problem`)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def int_digit_limit() -> int:
    return sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0


def suspicious(raw: bytes) -> bool:
    """Whether a parsed line needs :func:`problem`'s walk: it could hold a lone surrogate or
    nest deeper than the limit. Cheap enough for every line."""
    return bool(raw.count(b"[") + raw.count(b"{") > MAX_DEPTH or _SURROGATE_ESCAPE.search(raw))


def _where(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def problem(value: Any) -> str | None:
    """Why ``value`` cannot be one line of valid JSON in UTF-8, or None: nesting deeper than
    MAX_DEPTH, a lone surrogate (it has no UTF-8 form), a NaN or infinite number, an integer
    too long for Python to print."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            found = _LONE_SURROGATE.search(item)
            if found:
                return (f"'{_where(path)}' holds a lone surrogate (\\u{ord(found[0]):04x}), "
                        "which has no UTF-8 form")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"'{_where(path)}' is {item!r}, which is not valid JSON (numbers must be finite)"
        elif isinstance(item, int):
            try:
                str(item)
            except ValueError:
                return f"'{_where(path)}' is an integer with more than {int_digit_limit()} digits"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _LONE_SURROGATE.search(key):
                    return f"a key in '{_where(path) or 'the record'}' holds a lone surrogate"
                stack.append((child, (*path, key)))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, (*path, index)) for index, child in enumerate(item))
    return None
