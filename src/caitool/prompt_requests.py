"""What ``caitool red-team`` asks a model for: a request, kept as a small YAML file.

A request says what its example prompts are (``description``), how to ask for one more in
the chat format (``instruction``) and how each example is labelled in the raw format
(``label``). The built-in ones, ``red-team`` and ``helpful``, are files in
``constitutions/requests/`` beside the built-in constitutions, found the same way, so a user's
own request file is one of the same shape (``--request FILE``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from caitool.errors import CaitoolError

MAX_BYTES = 64 * 1024
FIELDS = ("name", "description", "instruction", "label")


@dataclass(frozen=True)
class PromptRequest:
    name: str
    description: str
    instruction: str
    label: str = "Request"


def builtin_names() -> list[str]:
    return list(dict.fromkeys(f.stem for d in _directories() for f in sorted(d.glob("*.yaml"))))


def _directories() -> list[Path]:
    from caitool.constitution.load import search_path

    return [d / "requests" for d in search_path() if (d / "requests").is_dir()]


def load(name_or_path: str) -> PromptRequest:
    """A built-in request by name, or a request file."""
    if name_or_path in builtin_names():
        path = next(d / f"{name_or_path}.yaml" for d in _directories()
                    if (d / f"{name_or_path}.yaml").is_file())
        return load_file(str(path))
    if os.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")) or os.path.exists(name_or_path):
        return load_file(name_or_path)
    raise CaitoolError(f"unknown request '{name_or_path}' (built-in: {', '.join(builtin_names())}; "
                       "or give a file)")


def load_file(path: str) -> PromptRequest:
    """A YAML request file: ``description`` and ``instruction`` (required), ``name`` (default:
    the file's stem) and ``label`` (default ``Request``); read in bounded time and memory."""
    import yaml

    from caitool.io import yaml_safe

    try:
        if not os.path.isfile(path):
            raise CaitoolError(f"{path}: " + ("not a regular file" if os.path.exists(path)
                                                else "no such file"))
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CaitoolError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise CaitoolError(f"{path}: larger than {MAX_BYTES // 1024} KiB; a request file holds a "
                           "few sentences")
    try:
        data = yaml_safe.load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CaitoolError(f"{path}: not UTF-8 text") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaitoolError(f"{path}: cannot parse: {problem}") from None
    if not isinstance(data, dict):
        raise CaitoolError(f"{path}: expected a mapping with {', '.join(FIELDS)}")
    unknown = sorted(set(map(str, data)) - set(FIELDS))
    if unknown:
        raise CaitoolError(f"{path}: unknown key '{unknown[0]}' (keys: {', '.join(FIELDS)})")
    for key in FIELDS:
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise CaitoolError(f"{path}: '{key}' must be a non-empty string")
    for key in ("description", "instruction"):
        if key not in data:
            raise CaitoolError(f"{path}: missing '{key}'")
    stem = os.path.splitext(os.path.basename(path))[0]
    return PromptRequest(name=data.get("name", stem).strip(), description=data["description"].strip(),
                         instruction=data["instruction"].strip(),
                         label=data.get("label", "Request").strip())
