"""Finding and loading constitutions: built-in names, files and directories, any format.

The project's own format is YAML (see ``constitutions/harmless.yaml``). Formats that users
already hold load too: Anthropic's released prompt files (a directory of JSON files),
Hugging Face's CAI recipe JSON, and LangChain-style principle lists; each has a module in
:mod:`caitool.constitution.formats`, and :func:`from_data` tells them apart by shape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from caitool.constitution.formats import anthropic, caitool_yaml, hf_recipe, langchain
from caitool.constitution.model import Constitution, ConstitutionError, validate
from caitool.errors import CaitoolError
from caitool.io import files, yaml_safe


def search_path() -> list[Path]:
    """Where ``-c NAME`` looks: $CAITOOL_CONSTITUTIONS, the installed package, the checkout."""
    paths = [Path(p) for p in os.environ.get("CAITOOL_CONSTITUTIONS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent.parent
    paths += [here / "constitutions", here.parent.parent / "constitutions"]
    return [p for p in paths if p.is_dir()]


def builtin_names() -> list[str]:
    names: dict[str, None] = {}
    for directory in search_path():
        for file in sorted(directory.glob("*.y*ml")):
            names.setdefault(file.stem, None)
    return list(names)


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    for directory in search_path():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name_or_path}{suffix}"
            if candidate.exists():
                return candidate
    known = ", ".join(builtin_names()) or "none found"
    raise CaitoolError(f"unknown constitution '{name_or_path}' (built-in: {known}; or give a path)")


def load(name_or_path: str) -> Constitution:
    """Load a built-in by name, or a file or directory in any supported format."""
    path = resolve(name_or_path)
    if path.is_dir():
        return anthropic.load_dir(path)
    source = str(path)
    text = files.read_text(source, "constitution")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml_safe.load(text)
    except json.JSONDecodeError as exc:
        raise ConstitutionError(source, f"line {exc.lineno}: cannot parse: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConstitutionError(source, f"{where}cannot parse: {problem}") from None
    except (ValueError, RecursionError) as exc:
        # JSON that its parser rejects late: an integer too long to convert, deep nesting.
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ConstitutionError(source, f"cannot parse: {problem}") from None
    constitution = from_data(data, source, default_name=path.stem)
    validate(constitution)
    return constitution


def from_data(data: Any, source: str, default_name: str) -> Constitution:
    """Recognise the format of already-parsed data."""
    if isinstance(data, dict) and "constitutions" in data:
        return hf_recipe.load(data, source, default_name)
    if isinstance(data, list) or (isinstance(data, dict) and langchain.recognises(data)):
        return langchain.load(data, source, default_name)
    if isinstance(data, dict) and ("critique_revision" in data or "comparison" in data):
        return caitool_yaml.load(data, source, default_name)
    raise ConstitutionError(
        source,
        "unrecognised format (expected caitool YAML with 'critique_revision'/'comparison', "
        "a Hugging Face recipe with 'constitutions', or a LangChain principle list)",
    )
