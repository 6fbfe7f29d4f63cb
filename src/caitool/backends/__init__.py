"""Backend registry. Built-ins are named by import path so that nothing heavy loads until a
backend is used; third-party packages add theirs through the ``caitool.backends`` entry point
group (``name = "package.module:Class"``)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from caitool.backends.base import (
    Backend,
    OptionScores,
    Prompt,
    RequestsFailed,
    SamplingParams,
)
from caitool.errors import CaitoolError

__all__ = ["Backend", "OptionScores", "Prompt", "RequestsFailed", "SamplingParams", "create",
           "names", "register"]

_REGISTRY: dict[str, str] = {
    "hf": "caitool.backends.hf:HFBackend",
    "vllm": "caitool.backends.vllm:VLLMBackend",
    "openai": "caitool.backends.openai:OpenAIBackend",
}


def register(name: str, target: str) -> None:
    """Make ``--backend name`` load ``target`` ("module:Class")."""
    _REGISTRY[name] = target


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="caitool.backends")}


def names() -> list[str]:
    return sorted({**_plugins(), **_REGISTRY})


def create(name: str, model: str, **options: Any) -> Backend:
    target = {**_plugins(), **_REGISTRY}.get(name)
    if target is None:
        raise CaitoolError(f"unknown backend '{name}' (available: {', '.join(names())})")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CaitoolError(f"backend '{name}' is not available: {exc}") from None
    cls = getattr(module, class_name)
    return cls(model, **options)
