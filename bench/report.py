"""docs/benchmarks.md from bench/run.py's results: the table, the targets, how each figure is
taken, notes on what was missed and why, and the profile."""

from __future__ import annotations

import os

import profiling
from common import DEFAULT_BATCH_SIZE, MODEL_SHAPE, verdict

TARGETS = {
    "few_shot": 1.3,     # time with the few-shot examples / without, judging and critique
    "score": 1.0,        # score() per pair / generating the answer per pair
    "limit": 0.80,       # critique tokens/s / bare generate's without the few-shot block
    "memory": 0.10,      # peak RSS growth from 1,000 to 100,000 records
    "overhead": 0.15,    # critique without prefix reuse may take this much longer than bare generate
    "prefix": 1.5,       # critique without prefix reuse / with it
}


def figures(args, r: dict) -> dict:
    """The ratios the targets and notes read."""
    mem = r["memory"]
    per_pair = {k: t.seconds / t.records for k, t in r["scoring"].items()}
    # What the backend does once per process (the few-shot block's pass, the check of split
    # attention), which a long run spreads over all its records.
    once = r["few"].extra.get("once", 0.0)
    warm = r["few"].seconds - once
    return {
        "judge": r["judge_few"].seconds / r["judge_none"].seconds,
        "judge_first": r["judge_few"].extra["first"] / r["judge_none"].extra["first"],
        # Per generated token: sampled critiques may end at different lengths with and
        # without the examples (with the random model all run to the limit).
        "critique": r["none"].tokens_per_s / r["few"].tokens_per_s,
        "critique_warm": r["none"].tokens_per_s * warm / r["few"].tokens,
        "score": per_pair["score"] / per_pair["answer"],
        "whole": per_pair["whole"] / per_pair["score"],
        "limit": r["few"].tokens_per_s / r["bare_none"].tokens_per_s,
        "limit_warm": r["few"].tokens / warm / r["bare_none"].tokens_per_s,
        "once": once,
        "memory": mem[args.memory_sizes[1]]["peak_mib"] / mem[args.memory_sizes[0]]["peak_mib"] - 1,
        "overhead": r["few_off"].seconds / r["bare_few"].seconds - 1,
        "prefix": r["few_off"].seconds / r["few"].seconds,
        "batched": r["few"].tokens_per_s / r["single"].tokens_per_s,
        "per_pair": per_pair,
    }


def rate_row(name: str, t) -> tuple[str, str, str, str]:
    from common import detail

    return name, f"{t.records_per_s:.2f} rec/s", f"{t.tokens_per_s:.1f} tok/s", detail(t)


def pair_row(name: str, t, first: bool = False) -> tuple[str, str, str, str]:
    text = f"{t.records} pairs in {t.seconds:.1f} s"
    if len(t.extra.get("rounds", [])) > 1:
        text += " (rounds: " + ", ".join(f"{s:.1f}" for s in t.extra["rounds"]) + " s)"
    rate = f"{t.seconds / t.records * 1000:.0f} ms/pair"
    return name, rate, (f"first batch {t.extra['first'] / t.records * 1000:.0f} ms/pair" if first
                        else ""), text


def table(args, r: dict) -> list[str]:
    scoring = r["scoring"]
    rows = [
        rate_row(f"critique, few-shot examples (batch size {DEFAULT_BATCH_SIZE}, prefix reuse)", r["few"]),
        rate_row("critique, no few-shot examples", r["none"]),
        rate_row("critique, few-shot examples, no prefix reuse", r["few_off"]),
        rate_row("bare model.generate, critique's batches without the few-shot examples", r["bare_none"]),
        rate_row("bare model.generate, critique's batches with them", r["bare_few"]),
        rate_row("one record per model call (loop), with them", r["single"]),
        *[rate_row(f"critique, few-shot examples, `--batch-size {size}` (alternating with each other)", t)
          for size, t in r["batch_sizes"].items()],
        pair_row(f"compare's judging, few-shot examples (both orders, batch {args.judge_batch})",
                 r["judge_few"], first=True),
        pair_row("compare's judging, no few-shot examples", r["judge_none"], first=True),
        pair_row("`score()` on the same prompts, both orders", scoring["score"]),
        pair_row(f"generating the answer instead ({scoring['answer'].extra['tokens']} tokens, greedy)",
                 scoring["answer"]),
        pair_row("`score()`, every prompt whole (no prefix reuse)", scoring["whole"]),
    ]
    for size in args.memory_sizes:
        m = r["memory"][size]
        rows.append((f"caitool critique, {size:,} records (micro model, 1 new token)",
                     f"first line {m['first_line']:.1f} s", f"peak {m['peak_mib']:.0f} MiB",
                     f"{m['lines']:,} lines in {m['seconds']:.1f} s"))
    return ["| measurement | rate / latency | tokens / memory | detail |", "|---|---|---|---|",
            *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]]


def without_once(f: dict, figure: str) -> str:
    """The figure without the few-shot block's one-time pass, where the run paid one (none
    where the block's keys and values came from the store on disk)."""
    if f["once"] < 0.05:
        return ""
    return f"; {figure} without the block's one-time pass ({f['once']:.1f} s)"


def targets(args, r: dict, f: dict) -> list[str]:
    small, large = args.memory_sizes
    first = {size: r["memory"][size]["first_line"] for size in args.memory_sizes}
    return [
        verdict(f["judge"] <= TARGETS["few_shot"],
                f"few-shot examples nearly free for judging: {args.pairs} pairs (both orders, batch "
                f"{args.judge_batch}) took {f['judge']:.2f}x the time with the `harmless` few-shot "
                f"examples as without them (target <= {TARGETS['few_shot']}x); the run's first "
                f"batch, which also runs the few-shot block once, {f['judge_first']:.2f}x"),
        verdict(f["critique"] <= TARGETS["few_shot"],
                f"few-shot examples nearly free for critique: {f['critique']:.2f}x the time per "
                f"generated token without them (target <= {TARGETS['few_shot']}x)"
                + without_once(f, f"{f['critique_warm']:.2f}x")),
        verdict(f["score"] <= TARGETS["score"],
                f"judging at the cost of one prompt pass: `score()` per pair, both orders, costs "
                f"{f['score']:.2f}x generating the {r['scoring']['answer'].extra['tokens']}-token "
                f"answer greedily from the same prompts (target <= {TARGETS['score']}x)"),
        verdict(f["limit"] >= TARGETS["limit"],
                f"close to the limit: critique generates at {f['limit']:.0%} of the tokens/s of "
                "bare model.generate on the same rows without the few-shot block (target >= "
                f"{TARGETS['limit']:.0%})" + without_once(f, f"{f['limit_warm']:.0%}")),
        verdict(f["memory"] <= TARGETS["memory"],
                f"peak memory at {large:,} records is {f['memory']:+.1%} of that at {small:,} "
                f"(target <= +{TARGETS['memory']:.0%}); first line after {first[small]:.1f} s and "
                f"{first[large]:.1f} s (reported)"),
        verdict(f["overhead"] <= TARGETS["overhead"],
                f"critique without prefix reuse took {f['overhead']:+.1%} time against bare "
                f"generate on the same prompts and batches (target <= +{TARGETS['overhead']:.0%})"),
        verdict(f["prefix"] >= TARGETS["prefix"],
                f"prefix reuse makes critique {f['prefix']:.1f}x faster (target >= "
                f"{TARGETS['prefix']:.1f}x)"),
    ]


def other_figures(args, r: dict, f: dict) -> list[str]:
    lines = [f"- batched critique vs one record per call: {f['batched']:.1f}x the generated "
             "tokens/s (a figure, no longer a target)",
             f"- prefix reuse in `score()`: {f['whole']:.1f}x faster per pair than running every "
             "judge prompt whole"]
    sizes = {DEFAULT_BATCH_SIZE: r["few"], **r["batch_sizes"]}
    if len(sizes) > 1:
        best = max(sizes, key=lambda size: sizes[size].tokens_per_s)
        default = sizes[DEFAULT_BATCH_SIZE].tokens_per_s / sizes[best].tokens_per_s
        lines.append(
            f"- `--batch-size` ({args.records} records, the sizes alternating round by round): "
            "critique's generated tokens/s " + ", ".join(
                f"{size}: {t.tokens_per_s:.0f}" for size, t in sorted(sizes.items()))
            + f"; the default ({DEFAULT_BATCH_SIZE}) reaches {default:.0%} of the best measured "
            f"({best}); within 10% of the best: "
            + ", ".join(str(size) for size, t in sorted(sizes.items())
                        if t.tokens_per_s >= 0.9 * sizes[best].tokens_per_s)
            + ". `--max-batch-size` (rows per forward pass, default 64) does not bind at these sizes "
            "with one sample per prompt; it caps `-n` samples and larger `--batch-size` values.")
    return lines


HOW = """\
- critique: the command's own code path (stream loop, JSONL file in and out, principle
  sampling, prompt building, the hf backend) in-process with the model already loaded, the
  `harmless` constitution with its few-shot examples, or the same constitution with none
  (`critique_examples` emptied in-process); each run loads its own backend, so its first
  batch runs the few-shot block once (that pass and the check of split attention are timed
  too: "the block's one-time pass"). Generated tokens are counted the same way everywhere:
  each row's new tokens before its end-of-sequence token (at the backend's sampling loop, at
  `model.generate` for the bare runs); with and without the examples critique is compared
  per generated token, as sampled critiques may end at different lengths.
- bare model.generate: the prompts and batches that critique sent (with or without the
  few-shot examples), tokenised and padded before the clock starts, then `generate()` with
  the same sampling settings; nothing else is timed. The limit target compares critique with
  its few-shot examples against this on the prompts without them: the model's work for the
  records' own tokens alone. Without prefix reuse critique does the same model work as bare
  generate on the prompts with the examples, which measures caitool's overhead.
- one record per model call: the same prompts, one `generate()` call per record (render,
  tokenise, generate, decode), as a chain that sends one request at a time does.
- judging: `judging.judge`, what `caitool compare` runs per batch (both orders, one sampled
  principle per pair), on pairs of real answers (the questions and first two options of
  examples/judge-eval.jsonl), with the `harmless` constitution's few-shot comparisons or with
  none. Each runs twice on one backend: the first pass also runs the few-shot block through
  the model, as a run's first batch does; the second, reported, starts from it, as every
  later batch does. `score()` and the generated answer run on the prompts judging sent, in
  the same batches, each on a fresh backend that has judged two pairs first, untimed.
- first line and memory: `caitool critique` run as a subprocess on a file of N records
  with a micro model (hidden 32, 1 layer), one new token and a constitution without
  few-shot examples, so that reading, batching and writing dominate; the peak is the
  process's maximum resident set size."""

BACKEND = """\
- Prompts go through in batches sorted by length (at most 64 at once), left-padded.
- The prefix that a batch's prompts share (the constitution's few-shot examples) is
  tokenised once and run through the model once per process; every later batch that
  starts with it attends to that single copy of its keys and values, and runs only its
  own tokens, for generation and for option scoring alike. (For a model whose attention does
  not allow this, checked on first use, each row gets a copy of the cached prefix instead.)
- A row that has finished (end-of-sequence token or stop string) leaves the batch and its
  cache, so the remaining steps run only the rows still going.
- The n samples of a prompt (`-n`) run the prompt once.
- Running out of memory halves the batch and carries on; later batches keep the
  smaller size."""


def ceilings(r: dict) -> dict:
    """What counting arithmetic allows (see critique.attention_ceiling) with the few-shot
    block against without it: a generated token (attending to its prompt and half its
    answer), a prompt pass (each token attending to half its row, on average), and a
    judging prompt pass; and a generated token on a 7B model's shape."""
    from critique import LLAMA_7B, attention_ceiling

    shape = dict(hidden_size=MODEL_SHAPE["hidden_size"], intermediate_size=MODEL_SHAPE["intermediate_size"],
                 num_attention_heads=MODEL_SHAPE["heads"], num_key_value_heads=MODEL_SHAPE["heads"] // 2,
                 num_hidden_layers=MODEL_SHAPE["layers"], vocab_size=MODEL_SHAPE["vocab_size"])
    prefix, own = r["prefix_tokens"], r["none_prompt_tokens"]
    judge_prefix = r["judge_few"].extra["prefix"]
    judge_own = r["judge_prompt_tokens"] - judge_prefix
    new = r["few"].tokens / r["few"].records
    return {
        "step": attention_ceiling(None, prefix, int(own + new / 2), shape=shape),
        "prompt": attention_ceiling(None, prefix, int(own / 2), head=False, shape=shape),
        "judge": attention_ceiling(None, judge_prefix, int(judge_own / 2), head=False, shape=shape),
        "step_7b": attention_ceiling(None, prefix, int(own + new / 2), shape=LLAMA_7B),
    }


def notes(args, info: dict, r: dict, f: dict) -> list[str]:
    """Why a target was missed, and what else a reader needs to read the figures."""
    found = []
    cores = os.cpu_count() or 1
    p = r["profile"]
    if info["GPU"] == "none":
        found.append("- No GPU was available for this run: all rows are CPU figures.")
    if float(info["load average at start"].split()[0]) >= cores:
        found.append("- The machine was shared with other work during the run (see the load "
                     "averages): absolute numbers are noisy, and each ratio compares runs that "
                     "alternated under the same conditions."
                     + (" One torch thread was used, as threads beyond the free cores spin "
                        "against the other work and slow every step down several times over."
                        if info["torch threads"] == "1" and cores > 1 else ""))
    a = r["anatomy"]
    c = ceilings(r)
    # Own time of the linear layers' and attention's kernels (from the top entries for runs
    # saved before the profile summed them).
    ops = p.get("ops") or {label: sum(tt for name, _, tt in p["own"] if any(k in name for k in keys))
                           for label, keys in (("linear", profiling.LINEAR_KERNELS),
                                               ("attention", ("scaled_dot_product_attention", "matmul")))}
    prompt_ratio = a["few"]["prompt"] / a["none"]["prompt"]
    step_ratio = a["few"]["step"] / a["none"]["step"]
    work = p["loop"][0] - p["load"][0]
    found.append(
        f"- Where the few-shot block costs, in CPU seconds for one batch of "
        f"{min(args.records, DEFAULT_BATCH_SIZE)} critique prompts on a backend that has cached the "
        "block: the prompt pass over the rows' own tokens "
        f"{a['few']['prompt']:.2f} s with it against {a['none']['prompt']:.2f} s without "
        f"({prompt_ratio:.1f}x), then each generated token {a['few']['step'] * 1000:.0f} ms against "
        f"{a['none']['step'] * 1000:.0f} ms ({step_ratio:.2f}x). Every one of those tokens attends to "
        f"the block's {r['prefix_tokens']} keys in every layer. Counting arithmetic alone (the linear "
        "layers' multiply-adds per token against attention's 4 x hidden per key), that makes the prompt "
        f"pass {1 / c['prompt']:.2f}x and a generated token {1 / c['step']:.2f}x as costly on this model "
        f"(hidden {MODEL_SHAPE['hidden_size']}): critique with the block can reach at most "
        f"{c['step']:.0%} of the tokens/s without it on a CPU, where these passes are bound by "
        "arithmetic. The share shrinks with the model's width: by the same count a model of hidden "
        f"size 4096 (a 7B Llama) would reach {c['step_7b']:.0%}. The profile below agrees: attention's "
        "kernels (`scaled_dot_product_attention` in the prompt passes, `matmul` in the steps) take "
        f"{ops['attention']:.1f} s against {ops['linear']:.1f} s for all the linear layers. A "
        "run also pays the block's own pass once, in its first batch.")
    missed = [text for miss, text in (
        (f["limit"] < TARGETS["limit"],
         f"{f['limit']:.0%} of bare generate's tokens/s without it, target {TARGETS['limit']:.0%}"),
        (f["critique"] > TARGETS["few_shot"],
         f"{f['critique']:.2f}x the time per token of critique without it, target "
         f"{TARGETS['few_shot']}x")) if miss]
    if missed:
        once = (f"this short run pays the block's own pass ({f['once']:.1f} s; without it "
                f"{f['limit_warm']:.0%} and {f['critique_warm']:.2f}x)" if f["once"] >= 0.05 else
                "the block's keys and values came from the store on disk, so no pass of its own")
        found.append(
            f"- critique with the few-shot block ({'; '.join(missed)}): "
            f"missed for the reason above: the targets lie beyond what the arithmetic allows on this "
            f"model ({c['step']:.0%} at most), the prompt pass costs {prompt_ratio:.1f}x where the "
            f"count gives {1 / c['prompt']:.2f}x, and {once}. "
            "It is not caitool's own work: in the profile the "
            f"forward passes take {p['forward'][0] / work:.0%} of the batch loop's work, and all of "
            f"caitool's own Python {p['caitool']:.2f} s of {p['total']:.1f} s.")
    if f["judge"] > TARGETS["few_shot"]:
        found.append(
            f"- judging with the few-shot examples ({f['judge']:.2f}x, target {TARGETS['few_shot']}x): "
            "judging is a prompt pass alone, whose own tokens attend to the block's "
            f"{r['judge_few'].extra['prefix']} keys; counting arithmetic alone gives "
            f"{1 / c['judge']:.2f}x.")
    if f["score"] > TARGETS["score"]:
        found.append(
            f"- `score()` against generating the answer ({f['score']:.2f}x, target {TARGETS['score']}x): "
            "both run each prompt once from the cached block, then `score()` runs the options' last "
            "token in one pass over two rows per prompt (one per option) where generation runs two "
            "one-token steps over one row per prompt: the same arithmetic, so the ratio sits at 1.0 "
            "within this machine's noise.")
    if f["overhead"] > TARGETS["overhead"]:
        found.append("- overhead above target: see the profile for caitool's own share; on a busy "
                     "machine rerun to separate noise from overhead.")
    if f["memory"] > TARGETS["memory"]:
        found.append("- memory grew with input length: something holds records or outputs.")
    if f["prefix"] < TARGETS["prefix"]:
        found.append("- prefix reuse gained less than the target: the shared prefix is a small "
                     "part of the work at this prompt length.")
    found.append(f"- batched vs one record per call ({f['batched']:.1f}x): on a CPU a decoding "
                 "step's arithmetic grows with the number of rows, so a step over 16 rows costs "
                 "several times one over a single row, where on a GPU it costs about the same. "
                 "What batching saves here is mostly the few-shot block, which the loop runs "
                 "again for every record, and the per-call overhead of generate().")
    return found


def render(args, info: dict, r: dict, command: str, date: str) -> str:
    f = figures(args, r)
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`python bench/run.py`); every figure below comes from one run",
        "on one machine, so read the ratios between rows rather than the absolute numbers. The",
        "built-in real model's figures (`make bench-builtin`) follow in their own section.",
        "",
        f"- date: {date}",
        f"- command: `{command}`",
        *[f"- {k}: {v}" for k, v in info.items()],
        f"- model: random-weight Llama architecture, {r['model_params']:.1f}M parameters "
        f"(hidden {MODEL_SHAPE['hidden_size']}, {MODEL_SHAPE['layers']} layers, vocabulary "
        f"{MODEL_SHAPE['vocab_size']}), chat format, built-in `harmless` constitution",
        f"- critique: 5 few-shot examples, {r['prefix_tokens']} shared prompt tokens; prompts of "
        f"{r['few_prompt_tokens']:.0f} tokens on average with them, {r['none_prompt_tokens']:.0f} "
        f"without; temperature 1, up to {args.max_new_tokens} new tokens, {args.records} records",
        f"- judging: 3 few-shot comparisons, {r['judge_few'].extra['prefix']} shared prompt tokens; "
        f"prompts of {r['judge_prompt_tokens']:.0f} tokens on average; {args.pairs} pairs",
        f"- critique and judging rows are medians of {args.repeat} alternating rounds",
        "",
        *table(args, r),
        "",
        "## Targets",
        "",
        *[f"- {t}" for t in targets(args, r, f)],
        "",
        "Other figures:",
        "",
        *other_figures(args, r, f),
        "",
        "## How each figure is taken",
        "",
        HOW,
        "",
        "## Notes",
        "",
        *notes(args, info, r, f),
        "",
        *profiling.section(r["profile"], profiling.shown(args.profile_records, args.max_new_tokens)),
        "",
        "## What the hf backend does for speed",
        "",
        BACKEND,
        "",
    ]
    return "\n".join(lines)
