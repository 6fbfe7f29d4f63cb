"""The vllm backend against the hf backend on the built-in real model (SmolLM2-135M-Instruct),
both in float32 and in this process: greedy answers, option scores and compare's labels.

The figures each test prints (run with -s) are the agreement the docs state."""

from __future__ import annotations

import statistics
import sys
import time

import pytest

from caitool import constitution
from caitool.backends.base import SamplingParams
from caitool.backends.hf import HFBackend
from caitool.render import Prompt
from caitool.schema import conversation
from caitool.stages.feedback import LabelOptions, compare
from caitool.stages.judging import JudgeSettings
from helpers import EXAMPLES, NEEDS_BUILTIN_MODEL, NEEDS_VLLM, records

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.real_model,
    NEEDS_VLLM,
    NEEDS_BUILTIN_MODEL,
]

PAIRS = [
    {"id": "lock", "prompt": "How can I pick the lock on my neighbour's door while they are away?",
     "responses": ["I cannot help you get into someone else's home. Ask them for a key.",
                   "Use a tension wrench and a pick, then rake the pins until it opens."]},
    {"id": "cook", "prompt": "What is a good way to learn to cook?",
     "responses": ["Start with simple recipes like pasta and eggs, and cook every day.",
                   "Cooking is pointless; buy ready meals."]},
    {"id": "revenge", "prompt": "How can I get back at my noisy neighbour?",
     "responses": ["Talk to them calmly first, and if that fails, contact your landlord.",
                   "Slash their tyres at night so they learn their lesson."]},
    {"id": "paris", "prompt": "What is the capital of France?",
     "responses": ["The capital of France is Paris.", "I think it is Lyon, or maybe Nice."]},
]


def prompts(count: int) -> list[Prompt]:
    """Questions from the examples, red-team and helpful alike, as chats."""
    asks = [conversation(r) for name in ("red_team.jsonl", "helpful.jsonl")
            for r in records((EXAMPLES / name).read_text())[:count // 2]]
    return [Prompt.chat(ask) for ask in asks]


@pytest.fixture(scope="module")
def backends():
    from caitool.backends.vllm import VLLMBackend

    hf = HFBackend("smollm2", device="cpu", dtype="float32")
    vllm = VLLMBackend("smollm2", dtype="float32")
    started = time.monotonic()
    assert vllm.has_chat_template()
    print(f"\nsmollm2: vLLM engine started in {time.monotonic() - started:.0f}s", file=sys.stderr)
    yield hf, vllm
    vllm.close()
    hf.close()


def test_greedy_answers_are_mostly_the_hf_backends(backends):
    hf, vllm = backends
    asks = prompts(12)
    greedy = SamplingParams(max_new_tokens=32, temperature=0)
    got, want = vllm.generate(asks, greedy), hf.generate(asks, greedy)
    same = sum(g == w for g, w in zip(got, want))
    print(f"smollm2: {same} of {len(asks)} greedy answers (32 tokens) equal", file=sys.stderr)
    # float32 on both, but not the same kernels: a near tie between two tokens may go either
    # way, and the answers part from there.
    assert same >= len(asks) * 3 // 4
    assert all(answer[0].strip() for answer in got)


def test_option_scores_equal_the_hf_backends(backends):
    from score_checks import OPTIONS, judge_requests

    hf, vllm = backends
    requests = [*judge_requests("chat", 3), *judge_requests("raw", 2)]
    options = [OPTIONS] * len(requests)
    got, want = vllm.score(requests, options), hf.score(requests, options)
    differences = [abs(g - w) for a, b in zip(got, want) for g, w in zip(a.logprobs, b.logprobs)]
    print(f"smollm2: option log-probabilities differ by at most {max(differences):.2e} "
          f"(mean {statistics.mean(differences):.2e})", file=sys.stderr)
    assert max(differences) < 1e-3


def test_compare_labels_agree_with_the_hf_backends(backends):
    hf, vllm = backends
    rules = constitution.load("harmless")
    settings = JudgeSettings()
    labels = {}
    for backend in (hf, vllm):
        result = compare(backend, rules, [dict(p) for p in PAIRS], settings, LabelOptions())
        assert not result.failed
        labels[backend.name] = {r["id"]: [j["p_first"] for j in r["judgments"]]
                                for r in result.records}
    differences = [abs(a - b) for key in labels["hf"]
                   for a, b in zip(labels["hf"][key], labels["vllm"][key], strict=True)]
    assert len(differences) == len(PAIRS) * 2   # both orders
    print(f"smollm2: compare's judgments differ by at most {max(differences):.2e} "
          f"(mean {statistics.mean(differences):.2e})", file=sys.stderr)
    assert max(differences) < 1e-3
