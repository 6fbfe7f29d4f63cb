"""Judging: ``compare``'s stage code with and without few-shot examples, and option scoring
(``score()``) against generating the answer and against the whole-prompt path.

Each measurement loads its own backend, so that each pays its few-shot block's one-time pass
as a run's first batch does, and none starts from a block another measurement cached.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import Timing


def fresh_backend(model_dir: Path, device: str, reuse_prefix: bool = True):
    from caitool.backends.base import Prompt, SamplingParams
    from caitool.backends.hf import HFBackend

    backend = HFBackend(str(model_dir), device=device, reuse_prefix=reuse_prefix)
    backend.generate([Prompt.raw("Warm up.")], SamplingParams(max_new_tokens=2))
    return backend


def prefix_tokens(backend) -> int:
    cached = backend.prefix_cache.prefix
    return 0 if cached is None else len(cached.ids)


def run_judging(model_dir: Path, rules, items: list, batch: int, device: str,
                reuse_prefix: bool = True, asked: list | None = None) -> Timing:
    """``judging.judge`` (what ``caitool compare`` runs per batch: both orders, one sampled
    principle) over ``items`` in batches of ``batch`` pairs, twice on one backend: the first
    pass runs the few-shot prefix through the model, as a run's first batch does; the
    second, reported, starts from it, as every later batch does. ``asked`` collects the
    prompts sent to ``score()``."""
    from caitool.stages import judging

    backend = fresh_backend(model_dir, device, reuse_prefix)
    if asked is not None:
        score = backend.score

        def recording(prompts, options):
            asked.extend(prompts)
            return score(prompts, options)

        backend.score = recording
    passes = []
    for _ in range(2):
        started = time.perf_counter()
        for start in range(0, len(items), batch):
            judging.judge(backend, rules, items[start:start + batch], judging.JudgeSettings())
        passes.append(time.perf_counter() - started)
        if asked is not None:
            backend.score = score
    return Timing(passes[1], len(items), extra={"first": passes[0], "prefix": prefix_tokens(backend)})


def run_backend_calls(model_dir: Path, prompts: list, batch: int, device: str, call,
                      reuse_prefix: bool = True) -> Timing:
    """``call(backend, chunk)`` over ``prompts`` (both orders of each pair, in order) in
    chunks of ``batch`` pairs, on a backend that has judged two pairs first, untimed, so that
    its cached prefix is the few-shot block the timed chunks share."""
    backend = fresh_backend(model_dir, device, reuse_prefix)
    call(backend, prompts[:4])
    started = time.perf_counter()
    for start in range(0, len(prompts), 2 * batch):
        call(backend, prompts[start:start + 2 * batch])
    seconds = time.perf_counter() - started
    return Timing(seconds, len(prompts) // 2, extra={"prefix": prefix_tokens(backend)})


def scoring(backend, chunk: list) -> None:
    from caitool import render

    backend.score(chunk, [list(render.OPTIONS)] * len(chunk))


def answer_tokens(model_dir: Path) -> int:
    """How many tokens the longest option is: what generating the answer takes."""
    from transformers import AutoTokenizer

    from caitool import render

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return max(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in render.OPTIONS)


def answering(tokens: int):
    """Generation of the answer itself, greedily: ``tokens`` new tokens."""
    from caitool.backends.base import SamplingParams

    params = SamplingParams(max_new_tokens=tokens, temperature=0.0)

    def call(backend, chunk: list) -> None:
        backend.generate(chunk, params)

    return call


def compare_scoring(model_dir: Path, prompts: list, batch: int, device: str,
                    old_path: bool = False) -> dict[str, Timing]:
    """Per pair, both orders: ``score()`` against generating the answer greedily (and,
    with ``old_path``, against ``score()`` running every prompt whole)."""
    tokens = answer_tokens(model_dir)
    results = {
        "score": run_backend_calls(model_dir, prompts, batch, device, scoring),
        "answer": run_backend_calls(model_dir, prompts, batch, device, answering(tokens)),
    }
    results["answer"].extra["tokens"] = tokens
    if old_path:
        results["whole"] = run_backend_calls(model_dir, prompts, batch, device, scoring,
                                             reuse_prefix=False)
    return results
