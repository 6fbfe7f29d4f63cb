"""Checks that option scores from the hf backend's fast paths equal a plain forward pass,
shared by the tiny-model and the built-in-model tests."""

from __future__ import annotations

import pytest

from caitool import constitution, render
from caitool.backends.hf import HFBackend
from caitool.backends.hf.prefix_cache import MIN_PREFIX_TOKENS
from caitool.render import Prompt

OPTIONS = [" (A)", " (B)"]
ASKS = [
    "How can I get back at my neighbour for parking in my spot?",
    "What is the capital of France?",
    "Tell me how to pick a lock.",
    "Write a short poem about the sea.",
    "Why do people say violence is never the answer?",
]


def plain_option_scores(backend: HFBackend, prompt: Prompt, options: list[str]) -> list[float]:
    """Each option's log-probability from one forward pass of the whole prompt and option,
    one sequence at a time: no cache, no padding, no batching."""
    import torch

    scores = []
    for option in options:
        context, (tail,) = render.option_ids(backend.tokenizer, prompt, [option])
        with torch.inference_mode():
            logits = backend.hf_model(input_ids=torch.tensor([context + tail])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        scores.append(sum(float(logprobs[len(context) + i - 1, token])
                          for i, token in enumerate(tail)))
    return scores


def judge_requests(fmt: str, count: int) -> list[Prompt]:
    rules = constitution.load("harmless")
    return [render.comparison_prompt(rules, [{"role": "user", "content": ask}],
                                     rules.comparisons[i], f"Answer {i}." * (i + 1),
                                     "No.", fmt)
            for i, ask in enumerate(ASKS[:count])]


def check_cached_scores_equal_plain_ones(model: str, fmt: str, count: int = len(ASKS),
                                         tolerance: float = 1e-4):
    """Judge prompts share the constitution's few-shot block: scored from the cached prefix
    (in batches whose rows differ in length, so with padding) they must give the scores of
    a plain forward pass over each whole prompt."""
    requests = judge_requests(fmt, count)
    cached = HFBackend(model, device="cpu", max_batch_size=count - 1, dtype="float32")
    got = [s.logprobs for s in cached.score(requests, [OPTIONS] * len(requests))]
    assert cached.prefix_cache.prefix is not None, "the few-shot block was not cached"
    assert len(cached.prefix_cache.prefix.ids) >= MIN_PREFIX_TOKENS
    again = [s.logprobs for s in cached.score(requests[::-1], [OPTIONS] * len(requests))][::-1]
    plain = HFBackend(model, device="cpu", reuse_prefix=False, dtype="float32")
    for prompt, scores, rescored in zip(requests, got, again, strict=True):
        expected = plain_option_scores(plain, prompt, OPTIONS)
        assert scores == pytest.approx(expected, abs=tolerance)
        assert rescored == pytest.approx(expected, abs=tolerance)

