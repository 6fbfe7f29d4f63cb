"""train-sft killed with SIGKILL at random moments, resumed each time: the metrics file has
every step once, and the model it ends with is the one an uninterrupted run makes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from helpers import caitool
from train_helpers import metrics, write

pytestmark = pytest.mark.slow

STEPS = 6


def _steps(log) -> list[int]:
    return [line["step"] for line in metrics(log.read_bytes()) if "loss" in line]


def _kill_after(command: list, log, step: int) -> None:
    """Run ``command`` and SIGKILL it as soon as the metrics file shows ``step``: wherever the
    run then is (the next step, or mid-way through a checkpoint's save), it stops there."""
    launched = time.time()
    process = subprocess.Popen([sys.executable, "-m", "caitool", *map(str, command)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "CAITOOL_QUIET": "1"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        # Only lines this run wrote (a resumed run first trims what the last one left).
        if log.exists() and log.stat().st_mtime > launched and max(_steps_so_far(log), default=0) >= step:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"it ended before step {step}: {err.decode()[-2000:]}"


def _steps_so_far(log) -> list[int]:
    found = []
    for raw in log.read_bytes().splitlines():
        try:
            found.append(json.loads(raw)["step"])
        except (ValueError, KeyError, TypeError):
            pass  # a line being written
    return found


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_kill_9_at_random_steps_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_model):
    data = write(tmp_path / "d.jsonl", [{"prompt": f"Question {i}?", "response": f"Answer {i}."}
                                        for i in range(8)])

    def common(name: str) -> list:
        return [data, "-m", tiny_model, "-o", tmp_path / name, "--batch-size", "2",
                "--save-steps", "1", "--logging-steps", "1", "--learning-rate", "0.01",
                "--seed", "5", "--max-steps", STEPS, "--metrics", tmp_path / f"{name}.jsonl"]

    caitool("train-sft", *common("whole"))
    # Three kills in one run, each at a step drawn from a seeded generator: a later one can
    # land on a step the resumed run logs again, and any of them inside a save.
    rng = random.Random(28)
    kills = sorted(rng.sample(range(2, STEPS), 3))
    log = tmp_path / "killed.jsonl"
    for number, step in enumerate(kills):
        _kill_after(["train-sft", *common("killed"), *(["--resume"] if number else [])], log, step)
    resumed = caitool("train-sft", *common("killed"), "--resume")
    assert "resuming from" in resumed.stderr.decode()

    assert _steps(log) == list(range(1, STEPS + 1)), kills  # each step once, none lost
    assert _steps(tmp_path / "whole.jsonl") == list(range(1, STEPS + 1))
    whole, killed = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert whole.keys() == killed.keys()
    for name, tensor in whole.items():
        assert killed[name].allclose(tensor, atol=1e-5, rtol=1e-4), (name, kills)
    # The runs learned something, so equal weights are no accident of an untouched model.
    base = _weights(tiny_model)
    assert any(not base[name].allclose(tensor) for name, tensor in whole.items() if name in base)
