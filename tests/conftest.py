"""Shared fixtures: a tiny model built once per session, and a way to run caitool for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# A short constitution keeps prompts small where a test is not about the built-ins.
MINI = str(Path(__file__).resolve().parent / "data" / "mini.yaml")
# Small generations keep the suite fast; the code paths are the same at any length.
FAST = ["--max-new-tokens", "8"]


def caitool(*args: str, input: str | bytes | None = None, check: bool = True,
            env: dict[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m caitool ARGS`` in a real subprocess, as a user would."""
    full_env = {**os.environ, "CAITOOL_QUIET": "0", **(env or {})}
    data = input.encode() if isinstance(input, str) else input
    result = subprocess.run([sys.executable, "-m", "caitool", *map(str, args)], input=data,
                            capture_output=True, env=full_env, cwd=cwd, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"caitool {' '.join(map(str, args))} exited {result.returncode}:\n"
            f"{result.stderr.decode(errors='replace')}"
        )
    return result


def shell(command: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
          cwd: str | Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a real shell pipeline with ``caitool`` meaning this interpreter's caitool."""
    bindir = Path(sys.executable).parent
    path = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, input=data,
                          env={**os.environ, "PATH": path, **(env or {})}, cwd=cwd or ROOT,
                          timeout=timeout)


def records(output: bytes | str) -> list[dict]:
    text = output.decode() if isinstance(output, bytes) else output
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny"
    from caitool.tiny import build

    build(path)
    return path


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-rm"
    from caitool.tiny import build

    build(path, seq_cls=True)
    return path


@pytest.fixture
def smoke_prompts() -> str:
    return (EXAMPLES / "smoke.jsonl").read_text()
