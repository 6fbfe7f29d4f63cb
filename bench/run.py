"""caitool's speed, measured against the model itself on this machine, in one run.

Builds a random-weight Llama-architecture model of about 25M parameters offline, then times:

1. ``critique`` at the default batch size against a loop that calls the model one record
   at a time (what one-request-at-a-time chains do);
2. ``critique`` against bare ``model.generate`` on the same prompts, batches and lengths;
3. option scoring by log-probabilities (both orders) against judging by generation;
4. time to the first output line and peak memory of ``caitool critique`` on 1,000 and
   100,000 records;
5. the shared few-shot prefix: the same critique run with and without its reuse.

The table goes to stdout and, with the machine and the command, to docs/benchmarks.md.
Ratios are what to read: every row comes from the same run on the same machine.

    python bench/run.py            # full run (about 10-15 minutes on two busy CPU cores)
    python bench/run.py --quick    # smaller sizes, a few minutes
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["CAITOOL_QUIET"] = "1"

# The benchmark model: Llama architecture, ~25M parameters. Its tokenizer also learns the
# constitutions' and examples' words, so that text costs about as many tokens as it would
# with a real model's tokenizer (~4.5 characters per token) rather than 2.
MODEL_SHAPE = dict(hidden_size=512, layers=8, heads=8, intermediate_size=1152, vocab_size=4096)
# 'caitool critique' default --batch-size: the critique runs batch as the command would.
CRITIQUE_BATCH_SIZE = 16
RESPONSE = ("I understand why you are asking. Here is what I would suggest instead: talk it "
            "through with someone you trust, and keep everyone safe.")
TARGETS = {
    "batched": 10.0,     # batched critique / one-at-a-time loop, generated tokens/s
    "overhead": 0.15,    # critique time may exceed bare generate by this share
    "compare": 5.0,      # generation judging time per pair / log-prob time per pair
    "memory": 0.10,      # peak RSS growth from 1,000 to 100,000 records
    "prefix": 1.5,       # critique without prefix reuse / with it
}


@dataclass
class Timing:
    seconds: float
    records: int
    tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def median(timings: list[Timing]) -> Timing:
    """The run of median duration (for two, their mean), noting every round's seconds."""
    ordered = sorted(timings, key=lambda t: t.seconds)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        chosen = ordered[middle]
        result = Timing(chosen.seconds, chosen.records, chosen.tokens, dict(chosen.extra))
    else:
        a, b = ordered[middle - 1], ordered[middle]
        result = Timing((a.seconds + b.seconds) / 2, a.records, (a.tokens + b.tokens) // 2,
                        dict(a.extra))
    result.extra["rounds"] = [t.seconds for t in timings]
    return result


def detail(t: Timing, unit: str = "records") -> str:
    text = f"{t.records} {unit} in {t.seconds:.1f} s"
    rounds = t.extra.get("rounds", [])
    if len(rounds) > 1:
        text += " (rounds: " + ", ".join(f"{s:.1f}" for s in rounds) + " s)"
    return text


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- set-up -----------------------------------------------------------------------------------


def build_models(work: Path) -> tuple[Path, Path]:
    from caitool.testing.tiny import build

    extra = "\n".join(p.read_text() for p in sorted((ROOT / "constitutions").glob("*.yaml"))
                      + sorted((ROOT / "examples").glob("*.jsonl")))
    bench = build(work / "bench-25m", extra_text=extra, **MODEL_SHAPE)
    # For first-line and memory runs the model should cost next to nothing.
    micro = build(work / "micro", hidden_size=32, layers=1, heads=2)
    return bench, micro


def write_records(path: Path, count: int) -> Path:
    prompts = [json.loads(line)["prompt"] for line in (ROOT / "examples/red_team.jsonl").open()]
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"r{i}", "prompt": prompts[i % len(prompts)],
                                  "response": RESPONSE}) + "\n")
    return path


def count_generated(model, pad_id: int) -> list[int]:
    """Wrap ``model.generate`` (on the instance) to count the tokens it generates."""
    counter = [0]
    original = model.generate

    def generate(*args, **kwargs):
        output = original(*args, **kwargs)
        width = kwargs["input_ids"].shape[1]
        counter[0] += int((output[:, width:] != pad_id).sum())
        return output

    model.generate = generate
    return counter


def sampling_kwargs(max_new_tokens: int, pad_id: int) -> dict:
    """Exactly what the hf backend asks of generate() at temperature 1."""
    return dict(max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0,
                top_k=0, pad_token_id=pad_id)


# -- 1, 2, 5: critique ------------------------------------------------------------------------


def run_critique(model_dir: Path, records: Path, out: Path, max_new_tokens: int, device: str,
                 reuse_prefix: bool, calls: list | None = None) -> Timing:
    """``caitool critique`` as the command runs it (stream loop, JSONL in and out, default
    batch size), in-process so that interpreter start-up and model loading are left out."""
    from caitool import constitution
    from caitool.backends.base import Prompt, SamplingParams
    from caitool.backends.hf import HFBackend
    from caitool.io import stream
    from caitool.schema import check_for_critique
    from caitool.stages import supervised

    backend = HFBackend(str(model_dir), device=device, reuse_prefix=reuse_prefix)
    backend.generate([Prompt.raw("Warm up.")], SamplingParams(max_new_tokens=2))
    counter = count_generated(backend.hf_model, backend.tokenizer.pad_token_id)
    if calls is not None:
        original = backend.generate

        def recording(prompts, params):
            calls.append((list(prompts), params))
            return original(prompts, params)

        backend.generate = recording
    rules = constitution.load("harmless")
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, seed=0)
    sampler = supervised.Sampler(backend, params, "auto")
    started = time.perf_counter()
    stats = stream.run("critique", str(records),
                       lambda batch: supervised.critique(sampler, rules, batch),
                       output=str(out), batch_size=CRITIQUE_BATCH_SIZE,
                       validate=check_for_critique)
    seconds = time.perf_counter() - started
    return Timing(seconds, stats.written, counter[0], {"batch_size": CRITIQUE_BATCH_SIZE})


def run_bare(model_dir: Path, calls: list, device: str) -> Timing:
    """Bare ``model.generate`` on caitool's prompts, in caitool's batches, with its sampling
    settings; tokenising and padding happen before the clock starts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    from caitool.backends.hf import HFBackend

    render = HFBackend(str(model_dir)).render
    batches = []
    for prompts, params in calls:
        texts = [render(p) for p in prompts]
        batches.append((tokenizer(texts, return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(device), params))
    pad = tokenizer.pad_token_id
    with torch.inference_mode():
        model.generate(**tokenizer(["Warm up."], return_tensors="pt").to(device),
                       **sampling_kwargs(2, pad))
        seconds = 0.0
        tokens = 0
        records = 0
        for inputs, params in batches:
            torch.manual_seed(params.seed)
            started = time.perf_counter()
            output = model.generate(**inputs, **sampling_kwargs(params.max_new_tokens, pad))
            seconds += time.perf_counter() - started
            tokens += int((output[:, inputs["input_ids"].shape[1]:] != pad).sum())
            records += len(inputs["input_ids"])
    return Timing(seconds, records, tokens)


def run_one_at_a_time(model_dir: Path, calls: list, count: int, device: str) -> Timing:
    """One record per model call: render, tokenise, generate, decode, as a chain would."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from caitool.backends.hf import HFBackend

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    render = HFBackend(str(model_dir)).render
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
                                    **sampling_kwargs(params.max_new_tokens, pad))
            new = output[0, inputs["input_ids"].shape[1]:]
            tokenizer.decode(new, skip_special_tokens=True)
            tokens += int((new != pad).sum())
        seconds = time.perf_counter() - started
    return Timing(seconds, len(prompts), tokens)


# -- 3: compare -------------------------------------------------------------------------------


def comparison_prompts(pairs: int) -> list:
    """Both orders of ``pairs`` comparisons, as 'caitool compare' asks them."""
    from caitool import constitution, render

    rules = constitution.load("harmless")
    asks = [json.loads(line)["prompt"] for line in (ROOT / "examples/red_team.jsonl").open()]
    out = []
    for i in range(pairs):
        messages = [{"role": "user", "content": asks[i % len(asks)]}]
        principle = rules.comparisons[i % len(rules.comparisons)]
        first, second = RESPONSE, "Sure. Here is exactly how to do that, step by step."
        for a, b in ((first, second), (second, first)):
            out.append(render.comparison_prompt(rules, messages, principle, a, b, "chat"))
    return out


def run_compare(model_dir: Path, pairs: int, samples: int, device: str,
                batch: int) -> dict[str, Timing]:
    """Per pair, both orders: ``score()`` against three ways of judging by generation."""
    from caitool import render
    from caitool.backends.base import Prompt, SamplingParams
    from caitool.backends.hf import HFBackend

    options = list(render.OPTIONS)
    asked = comparison_prompts(pairs)

    def fresh() -> HFBackend:
        # A fresh backend per method, so that none inherits another's cached prefix.
        backend = HFBackend(str(model_dir), device=device)
        backend.generate([Prompt.raw("Warm up.")], SamplingParams(max_new_tokens=2))
        return backend

    used_prefix: list[bool] = []

    def timed(call) -> float:
        backend = fresh()
        find = backend.prefix_cache.lookup

        def noted(sequences, *args, **kwargs):
            found = find(sequences, *args, **kwargs)
            used_prefix.append(found is not None)
            return found

        backend.prefix_cache.lookup = noted
        used_prefix.clear()
        started = time.perf_counter()
        for start in range(0, len(asked), 2 * batch):
            call(backend, asked[start:start + 2 * batch])
        return time.perf_counter() - started

    answer = max(len(fresh().tokenizer(o, add_special_tokens=False)["input_ids"])
                 for o in options)
    greedy = SamplingParams(max_new_tokens=answer, temperature=0.0)
    sampled = SamplingParams(max_new_tokens=answer, temperature=1.0, n=samples, seed=0)
    verdict = SamplingParams(max_new_tokens=32, temperature=0.0)
    scored = timed(lambda b, chunk: b.score(chunk, [options] * len(chunk)))
    return {
        "logprobs": Timing(scored, pairs, extra={"prefix": any(used_prefix)}),
        "greedy": Timing(timed(lambda b, chunk: b.generate(chunk, greedy)), pairs,
                         extra={"tokens": answer}),
        "sampled": Timing(timed(lambda b, chunk: b.generate(chunk, sampled)), pairs,
                          extra={"tokens": answer, "n": samples}),
        "verdict": Timing(timed(lambda b, chunk: b.generate(chunk, verdict)), pairs,
                          extra={"tokens": 32}),
    }


# -- 4: first line and memory -----------------------------------------------------------------


# A fork of this (large) process would count this process's memory as the child's peak:
# a small launcher starts caitool and reports the peak of its own child.
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN)"
            ".ru_maxrss)); sys.exit(code)")


def run_subprocess(model_dir: Path, constitution: Path, records: Path, threads: int) -> dict:
    """``caitool critique`` as a user runs it: seconds to the first stdout line, total
    seconds, and the process's peak resident memory."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    peak_file = records.with_suffix(".peak")
    command = [sys.executable, "-c", LAUNCHER, str(peak_file),
               sys.executable, "-m", "caitool", "critique", str(records), "-m", str(model_dir),
               "-c", str(constitution), "--max-new-tokens", "1"]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()))
    drain.start()
    first = proc.stdout.readline()
    first_line = time.perf_counter() - started
    lines = 1 if first else 0
    for _ in proc.stdout:
        lines += 1
    proc.wait()
    total = time.perf_counter() - started
    drain.join()
    if proc.returncode != 0:
        raise SystemExit(f"caitool critique failed:\n{b''.join(errors).decode(errors='replace')}")
    # ru_maxrss is in KiB on Linux.
    peak = int(peak_file.read_text()) / 1024
    return {"first_line": first_line, "seconds": total, "lines": lines, "peak_mib": peak}


# -- report -----------------------------------------------------------------------------------


def machine(threads: int, device: str) -> dict[str, str]:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 ** 2:.0f} GiB"
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "RAM": ram,
        "GPU": gpu,
        "device used": device,
        "torch threads": str(threads),
        "load average at start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "software": f"Python {platform.python_version()}, torch {torch.__version__}, "
                    f"transformers {transformers.__version__}",
    }


def verdict(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'MISSED'}: {text}"


def report(args, info: dict, model_params: float, r: dict) -> str:
    c_on, c_off, bare, single = r["critique"], r["critique_off"], r["bare"], r["single"]
    cmp, mem = r["compare"], r["memory"]
    small, large = mem[args.memory_sizes[0]], mem[args.memory_sizes[1]]
    batched = c_on.tokens_per_s / single.tokens_per_s
    overhead_off = c_off.seconds / bare.seconds - 1
    overhead_on = c_on.seconds / bare.seconds - 1
    per_pair = {k: t.seconds / t.records for k, t in cmp.items()}
    memory_growth = large["peak_mib"] / small["peak_mib"] - 1
    prefix = c_off.seconds / c_on.seconds
    rows = [
        ("critique, batched (default batch size, prefix reuse)",
         f"{c_on.records_per_s:.2f} rec/s", f"{c_on.tokens_per_s:.1f} tok/s",
         detail(c_on)),
        ("critique, batched, no prefix reuse",
         f"{c_off.records_per_s:.2f} rec/s", f"{c_off.tokens_per_s:.1f} tok/s",
         detail(c_off)),
        ("bare model.generate, same prompts and batches",
         f"{bare.records_per_s:.2f} rec/s", f"{bare.tokens_per_s:.1f} tok/s",
         detail(bare)),
        ("one record per model call (loop)",
         f"{single.records_per_s:.2f} rec/s", f"{single.tokens_per_s:.1f} tok/s",
         detail(single)),
        ("compare: log-probabilities (`score()`), both orders",
         f"{per_pair['logprobs'] * 1000:.0f} ms/pair", "",
         f"{cmp['logprobs'].records} pairs in {cmp['logprobs'].seconds:.1f} s"),
        (f"compare by generation: the answer ({cmp['greedy'].extra['tokens']} tokens, greedy)",
         f"{per_pair['greedy'] * 1000:.0f} ms/pair", "",
         f"{cmp['greedy'].records} pairs in {cmp['greedy'].seconds:.1f} s"),
        (f"compare by generation: the answer sampled {cmp['sampled'].extra['n']} times "
         "(a soft label)", f"{per_pair['sampled'] * 1000:.0f} ms/pair", "",
         f"{cmp['sampled'].records} pairs in {cmp['sampled'].seconds:.1f} s"),
        ("compare by generation: a 32-token verdict (greedy)",
         f"{per_pair['verdict'] * 1000:.0f} ms/pair", "",
         f"{cmp['verdict'].records} pairs in {cmp['verdict'].seconds:.1f} s"),
    ]
    for size in args.memory_sizes:
        m = mem[size]
        rows.append((f"caitool critique, {size:,} records (micro model, 1 new token)",
                     f"first line {m['first_line']:.1f} s", f"peak {m['peak_mib']:.0f} MiB",
                     f"{m['lines']:,} lines in {m['seconds']:.1f} s"))
    table = ["| measurement | rate / latency | tokens / memory | detail |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]

    targets = [
        verdict(batched >= TARGETS["batched"],
                f"batched critique {batched:.1f}x the one-at-a-time loop in generated tokens/s "
                f"(target >= {TARGETS['batched']:.0f}x)"),
        verdict(overhead_off <= TARGETS["overhead"],
                f"critique without prefix reuse took {overhead_off:+.1%} time against bare "
                f"generate on the same batches (target <= +{TARGETS['overhead']:.0%}); with "
                f"reuse {overhead_on:+.1%}"),
        verdict(per_pair["greedy"] / per_pair["logprobs"] >= TARGETS["compare"],
                f"judging by log-probabilities is {per_pair['greedy'] / per_pair['logprobs']:.1f}x "
                f"as fast per pair as generating the answer, "
                f"{per_pair['sampled'] / per_pair['logprobs']:.1f}x as sampling it "
                f"{cmp['sampled'].extra['n']} times, "
                f"{per_pair['verdict'] / per_pair['logprobs']:.1f}x as a 32-token verdict "
                f"(target >= {TARGETS['compare']:.0f}x)"),
        verdict(memory_growth <= TARGETS["memory"],
                f"peak memory at {args.memory_sizes[1]:,} records is {memory_growth:+.1%} of "
                f"that at {args.memory_sizes[0]:,} (target <= +{TARGETS['memory']:.0%})"),
        verdict(prefix >= TARGETS["prefix"],
                f"prefix reuse makes critique {prefix:.1f}x faster (target >= "
                f"{TARGETS['prefix']:.1f}x)"),
    ]
    command = " ".join(["python", "bench/run.py", *sys.argv[1:]])
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`python bench/run.py`); every figure below comes from one run",
        "on one machine, so read the ratios between rows rather than the absolute numbers.",
        "",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- command: `{command}`",
        *[f"- {k}: {v}" for k, v in info.items()],
        f"- load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"- model: random-weight Llama architecture, {model_params:.1f}M parameters "
        f"(hidden {MODEL_SHAPE['hidden_size']}, {MODEL_SHAPE['layers']} layers, vocabulary "
        f"{MODEL_SHAPE['vocab_size']}), chat format, built-in `harmless` constitution "
        f"(5 few-shot examples, {r['prefix_tokens']} shared prompt tokens of "
        f"{r['prompt_tokens']})",
        f"- sampling: temperature 1, up to {args.max_new_tokens} new tokens per critique; "
        f"critique rows are medians of {args.repeat} alternating rounds",
        "",
        *table,
        "",
        "## Targets",
        "",
        *[f"- {t}" for t in targets],
        "",
        "## How each figure is taken",
        "",
        "- critique: the command's own code path (stream loop, JSONL file in and out, principle",
        "  sampling, prompt building, the hf backend) at the default `--batch-size`, in-process",
        "  with the model already loaded; generated tokens are counted at `model.generate`.",
        "- bare model.generate: the prompts and batches that critique sent, tokenised and padded",
        "  before the clock starts, then `generate()` with the same sampling settings; nothing",
        "  else is timed. critique's overhead is measured with prefix reuse off, so that both",
        "  do the same model work.",
        "- one record per model call: the same prompts, one `generate()` call per record (render,",
        "  tokenise, generate, decode), as a chain that sends one request at a time does.",
        "- compare: the hf backend's `score()` on both orders of each pair, against its",
        "  `generate()` on the same prompts: the answer (as many tokens as the longest option)",
        "  greedily; the answer sampled 8 times, the way to a soft label without",
        "  log-probabilities; and a 32-token greedy verdict, as a judge that explains itself.",
        "- first line and memory: `caitool critique` run as a subprocess on a file of N records",
        "  with a micro model (hidden 32, 1 layer), one new token and a constitution without",
        "  few-shot examples, so that reading, batching and writing dominate; the peak is the",
        "  process's maximum resident set size.",
        "",
    ]
    notes = explanations(args, info, r, batched, overhead_off, per_pair, memory_growth,
                         prefix)
    if notes:
        lines += ["## Notes", "", *notes, ""]
    lines += [
        "## What the hf backend does for speed",
        "",
        "- Prompts go through in batches sorted by length (at most 64 at once), left-padded.",
        "- The prefix that a batch's prompts share (the constitution's few-shot examples) is",
        "  tokenised once and run through the model once per process; every later batch that",
        "  starts with it attends to that single copy of its keys and values, and runs only its",
        "  own tokens. (For a model whose attention does not allow this, checked on first use,",
        "  each row gets a copy of the cached prefix instead.)",
        "- The n samples of a prompt (`-n`) run the prompt once.",
        "- Running out of memory halves the batch and carries on; later batches keep the",
        "  smaller size.",
        "",
    ]
    return "\n".join(lines)


def explanations(args, info, r, batched, overhead, per_pair, memory_growth, prefix) -> list[str]:
    """Why a target was missed, and what else a reader needs to read the figures."""
    notes = []
    cores = os.cpu_count() or 1
    if info["GPU"] == "none":
        notes.append("- No GPU was available for this run: all rows are CPU figures; "
                     "`make bench` on a GPU machine adds GPU figures.")
    if float(info["load average at start"].split()[0]) >= cores:
        notes.append("- The machine was shared with other work during the run (see the load "
                     "averages): absolute numbers are noisy, and each ratio compares runs that "
                     "alternated under the same conditions."
                     + (" One torch thread was used, as threads beyond the free cores spin "
                        "against the other work and slow every step down several times over."
                        if info["torch threads"] == "1" and cores > 1 else ""))
    notes.append("- The batched critique figures include the one-time cost of running the "
                 f"{r['prefix_tokens']}-token few-shot prefix, which a long run spreads over "
                 "all its records.")
    if batched < TARGETS["batched"]:
        notes.append(f"- batched vs one at a time ({batched:.1f}x, target "
                     f"{TARGETS['batched']:.0f}x): on a CPU a decoding step's arithmetic grows "
                     "with the number of rows, so a step over 16 rows costs several times one "
                     "over a single row, where on a GPU it costs about the same. What batching "
                     "saves here is mostly the few-shot prefix, which the loop runs again for "
                     "every record, and the per-call overhead of generate(); the remainder is "
                     "the model's own arithmetic for each record's own tokens.")
    if not r["compare"]["logprobs"].extra.get("prefix"):
        notes.append("- compare: `score()` runs each judge prompt whole, few-shot examples "
                     "included, where `generate()` runs the shared examples once per batch; "
                     "this is the main reason scoring is slower per pair than generating a "
                     "short answer here (sharing the cached prefix with `score()` is "
                     "the next speed-up for judging).")
    if per_pair["greedy"] / per_pair["logprobs"] < TARGETS["compare"]:
        notes.append("- compare by log-probabilities vs by generation (target "
                     f"{TARGETS['compare']:.0f}x): both run the judge's prompt once, and "
                     "generating a few-token answer adds only a few one-token steps to that "
                     "pass, so scoring cannot be several times faster than generating a short "
                     "answer; the gap grows with the length of what is generated (the verdict "
                     "row). What scoring brings is the soft label, from one pass and without "
                     "parsing an answer; sampled answers only estimate it.")
    if overhead > TARGETS["overhead"]:
        notes.append("- overhead above target: caitool's own work per batch (prompt building, "
                     "tokenising, JSON) is small next to the model's in a profile; on a busy "
                     "machine rerun to separate noise from overhead.")
    if memory_growth > TARGETS["memory"]:
        notes.append("- memory grew with input length: something holds records or outputs.")
    if prefix < TARGETS["prefix"]:
        notes.append("- prefix reuse gained less than the target: the shared prefix is a small "
                     "part of the work at this prompt length.")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--records", type=int, help="critique records (default 32; quick 16)")
    parser.add_argument("--single", type=int, help="records for the one-at-a-time loop (4; 2)")
    parser.add_argument("--pairs", type=int, help="comparison pairs (16; 8)")
    parser.add_argument("--max-new-tokens", type=int, help="critique length (64; 32)")
    parser.add_argument("--memory-sizes", type=int, nargs=2,
                        help="input sizes for first line and memory (1000 100000; 1000 10000)")
    parser.add_argument("--repeat", type=int, help="rounds of the critique timings, "
                        "medians reported (2; quick 1)")
    parser.add_argument("--threads", default="auto",
                        help="torch threads: a number, or auto (torch's default, or 1 when the "
                             "machine is already loaded: oversubscribed threads spin)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"),
                        help="where to write the report ('-' for nowhere)")
    parser.add_argument("--workdir", help="keep models and files here (default: a temp dir)")
    args = parser.parse_args()
    quick = args.quick
    args.records = args.records or (16 if quick else 32)
    args.repeat = args.repeat or (1 if quick else 2)
    args.single = args.single or (2 if quick else 4)
    args.pairs = args.pairs or (8 if quick else 16)
    args.max_new_tokens = args.max_new_tokens or (32 if quick else 64)
    args.memory_sizes = args.memory_sizes or ([1000, 10000] if quick else [1000, 100000])

    import torch
    import transformers

    # Model saving draws progress bars; the benchmark reports its own progress.
    transformers.utils.logging.disable_progress_bar()
    if args.threads == "auto":
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
        threads = 1 if busy else torch.get_num_threads()
    else:
        threads = int(args.threads)
    torch.set_num_threads(threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    info = machine(threads, device)
    log(f"threads {threads}, device {device}, load {info['load average at start']}")

    with tempfile.TemporaryDirectory(prefix="caitool-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        log("building models")
        bench_model, micro_model = build_models(work)
        from caitool.backends.hf import HFBackend

        probe = HFBackend(str(bench_model), device=device)
        model_params = sum(p.numel() for p in probe.hf_model.parameters()) / 1e6
        records = write_records(work / "critique.jsonl", args.records)
        results: dict = {}

        # The runs alternate, so that each kind sees the same share of the machine's load.
        runs: dict[str, list[Timing]] = {"critique": [], "critique_off": [], "bare": [],
                                         "single": []}
        calls: list = []
        for round_ in range(1, args.repeat + 1):
            log(f"round {round_}/{args.repeat}: critique, {args.records} records, prefix reuse on")
            recorded: list = []
            runs["critique"].append(run_critique(bench_model, records, work / "on.jsonl",
                                                 args.max_new_tokens, device, True, recorded))
            calls = calls or recorded
            log(f"round {round_}/{args.repeat}: critique, prefix reuse off")
            runs["critique_off"].append(run_critique(bench_model, records, work / "off.jsonl",
                                                     args.max_new_tokens, device, False))
            log(f"round {round_}/{args.repeat}: bare model.generate on the same batches")
            runs["bare"].append(run_bare(bench_model, calls, device))
            log(f"round {round_}/{args.repeat}: one record per call, {args.single} records")
            runs["single"].append(run_one_at_a_time(bench_model, calls, args.single, device))
        results.update({name: median(timings) for name, timings in runs.items()})
        encoded = probe.encode(calls[0][0])
        results["prompt_tokens"] = max(len(e) for e in encoded)
        results["prefix_tokens"] = len(os.path.commonprefix([tuple(e) for e in encoded]))
        log(f"compare, {args.pairs} pairs")
        results["compare"] = run_compare(bench_model, args.pairs, 8, device, batch=16)
        plain = work / "plain.json"
        plain.write_text(json.dumps([{
            "name": "harm", "critique_request": "Point out anything harmful in the response.",
            "revision_request": "Rewrite the response without the harmful parts."}]))
        results["memory"] = {}
        for size in args.memory_sizes:
            log(f"first line and memory, {size:,} records")
            inputs = write_records(work / f"memory-{size}.jsonl", size)
            results["memory"][size] = run_subprocess(micro_model, plain, inputs, threads)
            inputs.unlink()

    text = report(args, info, model_params, results)
    print(text)
    if args.output != "-":
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The real model's sections (bench/builtin.py, make demo) close the file; keep them.
        old = path.read_text() if path.exists() else ""
        kept = re.search(r"<!-- builtin:start -->.*", old, flags=re.S)
        path.write_text(text + ("\n" + kept.group(0) + "\n" if kept else ""))
        log(f"written to {args.output}")


if __name__ == "__main__":
    main()
