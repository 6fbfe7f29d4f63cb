"""Which class ``--backend NAME`` means, and the check that its options are its own.

Built-ins are named by import path so that nothing heavy loads until a backend is used;
packages add theirs through the ``caitool.backends`` entry-point group
(``name = "package.module:Class"``). A backend's options are the fields of its ``Options``
dataclass: the built-ins' have flags of their own (``--device``), and any backend's are
given as ``--backend-option KEY=VALUE`` (:func:`parse_options`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import types
import typing
from importlib.metadata import entry_points
from typing import Any

from caitool.backends.base import Backend, flag_name
from caitool.errors import CaitoolError

BUILTIN = {
    "hf": "caitool.backends.hf:HFBackend",
    "vllm": "caitool.backends.vllm:VLLMBackend",
    "openai": "caitool.backends.openai:OpenAIBackend",
}


def _targets() -> dict[str, str]:
    plugins = {ep.name: ep.value for ep in entry_points(group="caitool.backends")}
    return {**plugins, **BUILTIN}


def names() -> list[str]:
    return sorted(_targets())


def backend_class(name: str) -> type[Backend]:
    target = _targets().get(name)
    if target is None:
        raise CaitoolError(f"unknown backend '{name}' (available: {', '.join(names())})")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CaitoolError(f"backend '{name}' is not available: {exc}") from None
    return getattr(module, class_name)


def option_names(cls: type[Backend]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls.Options)]


def check_options(name: str, cls: type[Backend], options: dict[str, Any]) -> None:
    """A flag the chosen backend does not take is an error, not silently ignored."""
    known = option_names(cls)
    for key in options:
        if key not in known:
            takes = (f"its options: {', '.join(flag_name(k) for k in known)}" if known
                     else "it takes no options")
            raise CaitoolError(f"{flag_name(key)} does not apply to the {name} backend ({takes})")


TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _value(kind: Any, text: str) -> Any:
    """``text`` as an Options field of type ``kind`` takes it; ValueError if it cannot."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kinds = [k for k in typing.get_args(kind) if k is not type(None)]
        if text.lower() == "none":
            return None
        kind = kinds[0] if len(kinds) == 1 else str
    if kind is bool:
        if text.lower() not in TRUE + FALSE:
            raise ValueError("true or false")
        return text.lower() in TRUE
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise ValueError("a whole number" if kind is int else "a number") from None
        if not math.isfinite(value):
            raise ValueError("a finite number")
        return value
    return text


def parse_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (``--backend-option``) as options of the backend ``name``: each
    key a field of its Options, each value of that field's type; the Options class checks
    the values themselves when the backend is made, as for the built-in flags."""
    cls = backend_class(name)
    hints = typing.get_type_hints(cls.Options)
    known = option_names(cls)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CaitoolError(f"--backend-option {pair!r}: give KEY=VALUE")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            takes = f"its options: {', '.join(known)}" if known else "it takes no options"
            raise CaitoolError(f"--backend-option {key}: not an option of the {name} backend "
                               f"({hint}{takes})")
        try:
            options[key] = _value(hints[key], text)
        except ValueError as exc:
            raise CaitoolError(f"--backend-option {key}={text}: must be {exc}") from None
    return options


def create(name: str, model: str, **options: Any) -> Backend:
    """The backend ``name`` for ``model``; ``options`` are the ones the user gave."""
    cls = backend_class(name)
    check_options(name, cls, options)
    return cls(model, **options)
