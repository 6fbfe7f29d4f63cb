"""Finished rows leaving the batch: one batch of chat prompts whose answers end at very
different lengths, with ``drop_finished`` on (caitool's sampling loop) and off
(``model.generate``, which runs the batch until its longest row ends)."""

from __future__ import annotations

import time
from pathlib import Path

from common import DEFAULT_BATCH_SIZE, Timing, counting

# The built-in model's natural answers to these, greedy with repetition penalty 1.2, run
# from a few words ("Hello! How can I assist you today?") to a paragraph; the last four
# ask for essays and run to any token limit up to a few hundred.
SHORT = [
    "Complete the sentence: The cat sat on the ...",
    "Hi!",
    "In one sentence, what is a cat?",
    "Write a one-line motto for a bakery.",
    "Answer with one word: what colour is the sky on a clear day?",
    "Finish this line: Twinkle, twinkle, little star, ...",
    "Write one sentence about the sea.",
    "Suggest a name for a new coffee shop.",
    "Write a haiku about autumn.",
    "Translate 'thank you' into French.",
    "Write a two-sentence summary of what photosynthesis is.",
    "Explain briefly what a noun is.",
]
LONG = [
    "Write a long, detailed essay about the history of the Roman Empire.",
    "Explain in detail how a car engine works, step by step.",
    "Describe your ideal holiday in great detail, with many paragraphs.",
    "Write a detailed guide to learning to play the guitar, with many sections.",
]


def run_varied(model_dir: Path, device: str, max_new_tokens: int, rounds: int = 1) -> dict:
    """Both ways, alternating ``rounds`` times, on one batch of the default batch size;
    the texts, each row's length and whether the two ways wrote the same texts."""
    from caitool import render
    from caitool.backends.base import SamplingParams
    from caitool.backends.hf import HFBackend

    asks = (SHORT + LONG)[:DEFAULT_BATCH_SIZE]
    prompts = [render.response_prompt([{"role": "user", "content": a}], "chat")[0] for a in asks]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, repetition_penalty=1.2)
    runs: dict[bool, list[Timing]] = {True: [], False: []}
    texts: dict[bool, list] = {}
    lengths: dict[bool, list[int]] = {}
    for _ in range(rounds):
        for drop in (True, False):
            backend = HFBackend(str(model_dir), device=device, drop_finished=drop)
            backend.generate(prompts[:2], SamplingParams(max_new_tokens=2, temperature=0.0))
            with counting(backend) as generated:
                started = time.perf_counter()
                texts[drop] = backend.generate(prompts, params)
                seconds = time.perf_counter() - started
            runs[drop].append(Timing(seconds, len(prompts), generated.tokens))
            lengths[drop] = generated.rows
    # The backend sorts a batch by prompt length; the counts come back in that order.
    long_rows = [prompts[asks.index(a)] for a in LONG]
    return {"drop": runs[True], "keep": runs[False], "same": texts[True] == texts[False],
            "lengths": sorted(lengths[True]), "keep_lengths": sorted(lengths[False]),
            "rows": len(prompts), "max_new_tokens": max_new_tokens,
            "steps": step_costs(model_dir, device, prompts, long_rows),
            "differ": [(a, x[0], y[0]) for a, x, y in zip(asks, texts[True], texts[False]) if x != y]}

def step_costs(model_dir: Path, device: str, rows: list, few_rows: list, steps: int = 16) -> dict:
    """CPU seconds of one decoding step over all ``rows`` and over ``few_rows``, with every row
    running to the end (``generate()``); the least of two tries."""
    from caitool.backends.base import SamplingParams
    from caitool.backends.hf import HFBackend

    backend = HFBackend(str(model_dir), device=device, drop_finished=False)
    backend.generate(rows[:2], SamplingParams(max_new_tokens=2, temperature=0.0))
    costs = {}
    for prompts in (rows, few_rows):
        spent = {}
        for tokens in (1, steps + 1):
            params = SamplingParams(max_new_tokens=tokens, temperature=0.0, repetition_penalty=1.2)
            best = float("inf")
            for _ in range(2):
                started = time.process_time()
                backend.generate(prompts, params)
                best = min(best, time.process_time() - started)
            spent[tokens] = best
        costs[len(prompts)] = (spent[steps + 1] - spent[1]) / steps
    return costs


def best_gain(costs: dict, lengths: list[int]) -> float:
    """How much faster decoding can be when finished rows leave, for rows of these lengths,
    if a step costs what ``costs`` says (linear in the number of rows between the two
    measured sizes): every step at full size, against each step at the rows still going."""
    (small, small_cost), (large, large_cost) = sorted(costs.items())

    def cost(rows: int) -> float:
        return small_cost + (large_cost - small_cost) * (rows - small) / (large - small)

    longest = max(lengths)
    kept = longest * cost(len(lengths))
    dropped = sum(cost(sum(n > step for n in lengths)) for step in range(longest))
    return kept / dropped
