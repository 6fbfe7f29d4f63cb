"""Which class ``--backend NAME`` means, and the check that its options are its own.

Built-ins are named by import path so that nothing heavy loads until a backend is used;
packages add theirs through the ``caitool.backends`` entry-point group
(``name = "package.module:Class"``).
"""

from __future__ import annotations

import dataclasses
import importlib
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


def create(name: str, model: str, **options: Any) -> Backend:
    """The backend ``name`` for ``model``; ``options`` are the ones the user gave."""
    cls = backend_class(name)
    check_options(name, cls, options)
    return cls(model, **options)
