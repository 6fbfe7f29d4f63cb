"""The vllm backend from the command line, on the tiny model built for it: a pipe of two
engines whose stdout holds records and nothing else, revise after them, compare's labels
against the hf backend's, and an engine that cannot run a model stopping with one line.

Each command starts an engine (about a minute on two CPU cores), so the pipe's output
serves the tests after it."""

from __future__ import annotations

import json
import re

import pytest

from helpers import EXAMPLES, FAST, MINI, NEEDS_VLLM, caitool, jsonl, records, shell

pytestmark = [
    pytest.mark.vllm,
    NEEDS_VLLM,
]

VLLM = ["--backend", "vllm", "--dtype", "float32"]
# A line of vLLM's own log, from any of its processes.
VLLM_LOG = re.compile(r"^(\(\w+ pid=\d+\) )?(DEBUG|INFO|WARNING|ERROR) \d\d-\d\d ")
PAIRS = [
    {"id": "lock", "prompt": "How can I pick the lock on my neighbour's door?",
     "responses": ["I cannot help with that; ask your neighbour for a key.",
                   "Use a tension wrench and rake the pins."]},
    {"id": "cook", "prompt": "What is a good way to learn to cook?",
     "responses": ["Start with simple recipes and cook every day.", "Do not bother."]},
    {"id": "sea", "prompt": "Write a short poem about the sea.",
     "responses": ["Blue waves roll in, grey waves roll out.", "The sea is wet."]},
]


def only_records(stdout: bytes) -> list[dict]:
    """Every line of stdout parsed as a JSON record; anything else fails the test."""
    lines = stdout.decode().split("\n")
    assert lines[-1] == "", "stdout does not end with a newline"
    out = []
    for number, line in enumerate(lines[:-1], 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"stdout line {number} is not JSON: {line[:200]!r}")
        assert isinstance(out[-1], dict), line
    return out


@pytest.fixture(scope="module")
def critiqued(vllm_tiny_model):
    model = str(vllm_tiny_model)
    flags = " ".join([*VLLM, "-m", model, *FAST])
    # Two engines at once: on a GPU each takes a share of its memory (on a CPU,
    # VLLM_CPU_KVCACHE_SPACE bounds them instead).
    return shell(f"caitool generate {flags} | caitool critique {flags} -c {MINI}",
                 input=(EXAMPLES / "smoke.jsonl").read_text(), timeout=900,
                 env={"CAITOOL_VLLM_ARGS": '{"gpu_memory_utilization": 0.3}'})


def test_generate_piped_into_critique_writes_records_and_nothing_else(critiqued, smoke_prompts):
    assert critiqued.returncode == 0, critiqued.stderr.decode()
    out = only_records(critiqued.stdout)
    assert [r["id"] for r in out] == [r["id"] for r in records(smoke_prompts)]
    for record in out:
        assert record["provenance"]["generate"]["backend"] == "vllm"
        assert record["provenance"]["critique"]["backend"] == "vllm"
        assert record["response"] and record["revisions"][0]["critique"]
    # stderr has room for vLLM's warnings, but its start-up log stays out of both streams.
    stderr = critiqued.stderr.decode()
    assert not [line for line in stderr.splitlines() if line.startswith("INFO")], stderr
    assert "Traceback" not in stderr, stderr


def test_revise_after_the_pipe(critiqued, vllm_tiny_model):
    assert critiqued.returncode == 0, critiqued.stderr.decode()
    result = caitool("revise", *VLLM, "-m", vllm_tiny_model, "-c", MINI, *FAST,
                     input=critiqued.stdout, timeout=600)
    out = only_records(result.stdout)
    assert len(out) == len(records(critiqued.stdout))
    assert all(r["revisions"][0]["revision"] is not None for r in out)
    assert all(r["provenance"]["revise"]["backend"] == "vllm" for r in out)
    stderr = result.stderr.decode()
    assert not [line for line in stderr.splitlines() if VLLM_LOG.match(line)], stderr


def test_compare_labels_agree_with_the_hf_backends(vllm_tiny_model):
    """Both backends in float32: the labels are the same numbers, up to float error."""
    common = ["compare", "-m", vllm_tiny_model, "-c", MINI, "--dtype", "float32"]
    by_vllm = only_records(caitool(*common, "--backend", "vllm", input=jsonl(PAIRS),
                                   timeout=600).stdout)
    by_hf = only_records(caitool(*common, "--backend", "hf", input=jsonl(PAIRS)).stdout)
    assert [r["id"] for r in by_vllm] == [r["id"] for r in by_hf] == ["lock", "cook", "sea"]
    differences = []
    for got, want in zip(by_vllm, by_hf):
        assert got["provenance"]["compare"]["method"] == "logprobs"
        assert got["provenance"]["compare"]["backend"] == "vllm"
        first = [j["p_first"] for j in got["judgments"]]
        expected = [j["p_first"] for j in want["judgments"]]
        differences += [abs(a - b) for a, b in zip(first, expected)]
        assert got["chosen"] == want["chosen"] or abs(got["p_chosen"] - 0.5) < 1e-3
    print(f"tiny model: compare labels differ by at most {max(differences):.2e}")
    assert max(differences) < 1e-3


def test_an_engine_that_cannot_run_stops_with_one_line(tiny_model, vllm_tiny_model):
    from caitool.backends import vllm as vb

    vb.route_logs()
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        # The tiny model's head size (16) has no CPU attention kernel; refused before the engine.
        result = caitool("generate", "--backend", "vllm", "-m", tiny_model, input=jsonl(
            [{"prompt": "hi"}]), check=False, timeout=300)
        assert result.returncode == 1
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "caitool generate: vLLM's CPU attention cannot run"), lines
        assert "head size is 16" in lines[0] and "--head-dim 64" in lines[0]
    # A setting vLLM refuses: its own message, on one line; asked for, vLLM's log before it
    # (on stderr too).
    result = caitool("generate", "--backend", "vllm", "-m", vllm_tiny_model,
                     input=jsonl([{"prompt": "hi"}]), check=False, timeout=300,
                     env={vb.LLM_ARGS_ENV: '{"max_model_len": 100000}',
                          "VLLM_LOGGING_LEVEL": "INFO"})
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert lines[-1].startswith(f"caitool generate: vLLM cannot load '{vllm_tiny_model}': ")
    assert "max_model_len (100000)" in lines[-1] and "VLLM_LOGGING_LEVEL" not in lines[-1]
    assert [line for line in lines if line.startswith("INFO")], lines
