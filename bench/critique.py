"""Critique: caitool's code path against bare ``model.generate`` and a one-record loop.

Every function here loads its own model, so that no run inherits another's cached prefix,
and leaves model loading and a warm-up call outside the clock.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import DEFAULT_BATCH_SIZE, Timing, counting, row_lengths, sampling_kwargs


def run_critique(model_dir: Path, records: Path, out: Path, params, device: str,
                 reuse_prefix: bool = True, calls: list | None = None, rules=None,
                 batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None) -> Timing:
    """``caitool critique`` as the command runs it (stream loop, JSONL file in and out,
    principle sampling, prompt building, the hf backend), in-process so that interpreter
    start-up and model loading are left out. ``calls`` collects every generate() request."""
    from caitool import constitution
    from caitool.backends.base import Prompt, SamplingParams
    from caitool.backends.hf import HFBackend
    from caitool.io import stream
    from caitool.schema import check_for_critique
    from caitool.stages import supervised

    backend = HFBackend(str(model_dir), device=device, reuse_prefix=reuse_prefix)
    backend.generate([Prompt.raw("Warm up.")], SamplingParams(max_new_tokens=2))
    if calls is not None:
        original = backend.generate

        def recording(prompts, sampling):
            calls.append((list(prompts), sampling))
            return original(prompts, sampling)

        backend.generate = recording
    once = watch_prefix(backend)
    rules = rules or constitution.load("harmless")
    sampler = supervised.Sampler(backend, params, "auto")
    with counting(backend) as generated:
        started = time.perf_counter()
        stats = stream.run("critique", str(records),
                           lambda batch: supervised.critique(sampler, rules, batch),
                           output=str(out), batch_size=batch_size, validate=check_for_critique)
        seconds = time.perf_counter() - started
    return Timing(seconds, stats.written, generated.tokens, {"batch_size": batch_size, "once": once[0]})


def watch_prefix(backend) -> list[float]:
    """Seconds the backend spends on what it does once per process: running the few-shot
    block through the model and checking split attention on it (in a one-item list)."""
    spent = [0.0]
    cache = backend.prefix_cache
    for name in ("lookup", "_split_cache"):
        original = getattr(cache, name)

        def timed(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started

        setattr(cache, name, timed)
    return spent


def _load(model_dir: Path, device: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from caitool.backends.hf import HFBackend, decode, precision

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The dtype the hf backend generates in here, so that the two paths do the same arithmetic.
    dtype = precision.generation_dtype(device, AutoConfig.from_pretrained(model_dir))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    model = model.to(device).eval()
    return tokenizer, model, HFBackend(str(model_dir)).render, decode.end_token_ids(model, tokenizer)


def run_bare(model_dir: Path, calls: list, device: str) -> Timing:
    """Bare ``model.generate`` on the prompts of ``calls``, in their batches, with their
    sampling settings; tokenising and padding happen before the clock starts."""
    import torch

    tokenizer, model, render, ends = _load(model_dir, device)
    batches = []
    for prompts, params in calls:
        texts = [render(p) for p in prompts]
        batches.append((tokenizer(texts, return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(device), params))
    pad = tokenizer.pad_token_id
    seconds, tokens, records = 0.0, 0, 0
    with torch.inference_mode():
        model.generate(**tokenizer(["Warm up."], return_tensors="pt").to(device),
                       **sampling_kwargs(2, pad))
        for inputs, params in batches:
            kwargs = sampling_kwargs(params.max_new_tokens, pad, params.temperature)
            if params.repetition_penalty != 1.0:
                kwargs["repetition_penalty"] = params.repetition_penalty
            torch.manual_seed(params.seed or 0)
            started = time.perf_counter()
            output = model.generate(**inputs, **kwargs)
            seconds += time.perf_counter() - started
            tokens += sum(row_lengths(output[:, inputs["input_ids"].shape[1]:], ends))
            records += len(inputs["input_ids"])
    return Timing(seconds, records, tokens)


def run_one_at_a_time(model_dir: Path, calls: list, count: int, device: str) -> Timing:
    """One record per model call: render, tokenise, generate, decode, as a chain that sends
    one request at a time does."""
    import torch

    tokenizer, model, render, ends = _load(model_dir, device)
    prompts = [p for batch, _ in calls for p in batch][:count]
    params = calls[0][1]
    pad = tokenizer.pad_token_id
    tokens = 0
    with torch.inference_mode():
        model.generate(**tokenizer(["Warm up."], return_tensors="pt").to(device),
                       **sampling_kwargs(2, pad))
        started = time.perf_counter()
        for prompt in prompts:
            inputs = tokenizer(render(prompt), return_tensors="pt", add_special_tokens=False)
            output = model.generate(**inputs.to(device),
                                    **sampling_kwargs(params.max_new_tokens, pad, params.temperature))
            new = output[:, inputs["input_ids"].shape[1]:]
            tokenizer.decode(new[0], skip_special_tokens=True)
            tokens += sum(row_lengths(new, ends))
        seconds = time.perf_counter() - started
    return Timing(seconds, len(prompts), tokens)


# A 7B Llama's shape, to show how the few-shot block's cost shrinks with the model's width.
LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                num_key_value_heads=32, num_hidden_layers=32, vocab_size=32000)


def attention_ceiling(model_dir: Path | None, prefix_tokens: int, own_tokens: int,
                      head: bool = True, shape: dict | None = None) -> float:
    """The most that a token attending to ``prefix_tokens`` more keys can reach of the speed
    without them, counting arithmetic only: per token and layer, the linear layers'
    multiply-adds (and the output layer's share, ``head``, which a prompt pass computes for
    its last position only) against attention's 4 x hidden per key (scores and values);
    ``own_tokens``: the keys it attends to either way."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    config = SimpleNamespace(**shape) if shape else AutoConfig.from_pretrained(model_dir)
    d, ff = config.hidden_size, config.intermediate_size
    kv = d // config.num_attention_heads * getattr(config, "num_key_value_heads",
                                                   config.num_attention_heads)
    linear = 2 * (d * d * 2 + d * kv * 2 + 3 * d * ff)
    if head:
        linear += 2 * d * config.vocab_size / config.num_hidden_layers
    base = linear + 4 * d * own_tokens
    return base / (base + 4 * d * prefix_tokens)


def anatomy(model_dir: Path, few: list, none: list, device: str, steps: int = 16) -> dict:
    """Where the few-shot block's cost lies, in CPU seconds (steadier than wall time on a
    shared machine) for one batch of critique prompts with it (``few``) and without it
    (``none``), each on a backend that has already cached its prefix: the rows' own prompt
    tokens (one new token), and each further generated token; the least of three tries."""
    import torch

    from caitool.backends.base import SamplingParams
    from caitool.backends.hf import HFBackend

    found = {}
    for name, prompts in (("few", few), ("none", none)):
        backend = HFBackend(str(model_dir), device=device)
        backend.generate(prompts[:4], SamplingParams(max_new_tokens=1, temperature=0.0))
        costs = {}
        for tokens in (1, steps + 1):
            best = float("inf")
            for _ in range(3):
                params = SamplingParams(max_new_tokens=tokens, temperature=1.0, seed=0)
                started = time.process_time()
                backend.generate(prompts, params)
                best = min(best, time.process_time() - started)
            costs[tokens] = best
        found[name] = {"prompt": costs[1], "step": (costs[steps + 1] - costs[1]) / steps,
                       "threads": torch.get_num_threads()}
    return found
