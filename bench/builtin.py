"""The built-in real model's speed in caitool's own commands, against the model itself.

On SmolLM2-135M-Instruct (the default model, de-quantised from the packaged GGUF file):

1. finished rows leaving the batch: one batch of chat prompts whose answers end at very
   different lengths, with ``drop_finished`` on and off (greedy, so the texts must match);
2. judging: ``score()`` on compare's prompts against the whole-prompt path and against
   generating the answer, and compare's judging with and without few-shot examples;
3. ``caitool critique`` with its few-shot examples against bare ``model.generate`` on the
   same rows without them.

Writes its section into docs/benchmarks.md between the markers ``builtin:start`` and
``builtin:end`` (bench/run.py keeps that section when it rewrites the file).

    python bench/builtin.py            # about 10 minutes on two busy CPU cores
    python bench/builtin.py --quick    # smaller sizes, a few minutes
    python bench/builtin.py --results r.pickle; python bench/builtin.py --report-only r.pickle
"""

from __future__ import annotations

import argparse
import datetime
import os
import pickle
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import critique  # noqa: E402
import judge  # noqa: E402
import memory  # noqa: E402
import varied  # noqa: E402
from common import (  # noqa: E402
    DEFAULT_BATCH_SIZE,
    DOCS,
    choose_threads,
    judge_pairs,
    loadavg,
    log,
    machine,
    median,
    publish,
    shown_command,
    verdict,
    without_examples,
    write_records,
)

TARGETS = {
    "drop": 1.5,      # drop_finished off / on, seconds, on the varied batch
    "whole": 3.0,     # score() per pair, whole prompts / from the cached prefix
    "limit": 0.80,    # critique tokens/s / bare generate's without the few-shot block
    "few_shot": 1.3,  # judging time with the few-shot examples / without
    "score": 1.0,     # score() per pair / generating the answer
    "startup": 3.0,   # seconds to caitool critique's first line on one record
}


def measure(args, model, work: Path) -> dict:
    from caitool import constitution
    from caitool.backends.base import SamplingParams

    r: dict = {}
    log(f"finished rows: {DEFAULT_BATCH_SIZE} prompts, up to {args.varied_tokens} new tokens, "
        "drop_finished on and off")
    r["varied"] = varied.run_varied(model, "cpu", args.varied_tokens, args.repeat)
    rules = constitution.load("harmless")
    items = judge_pairs(args.pairs)
    asked: list = []
    log(f"judging {args.pairs} pairs with the few-shot examples")
    r["judge_few"] = judge.run_judging(model, rules, items, args.pairs, "cpu", asked=asked)
    log("judging without them")
    r["judge_none"] = judge.run_judging(model, without_examples(rules), items, args.pairs, "cpu")
    log("score() from the cached prefix, generating the answer, score() on whole prompts")
    r["scoring"] = judge.compare_scoring(model, asked, args.pairs, "cpu", old_path=True)
    records = write_records(work / "critique.jsonl", args.records)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0)
    calls_few: list = []
    calls_none: list = []
    log(f"critique, {args.records} records, few-shot examples")
    r["few"] = critique.run_critique(model, records, work / "few.jsonl", params, "cpu", calls=calls_few)
    log("critique, no few-shot examples")
    r["none"] = critique.run_critique(model, records, work / "none.jsonl", params, "cpu",
                                      calls=calls_none, rules=without_examples(rules))
    log("bare model.generate on critique's batches without the few-shot examples")
    r["bare_none"] = critique.run_bare(model, calls_none, "cpu")
    r["batch_sizes"] = {DEFAULT_BATCH_SIZE: r["few"]}
    for size in args.batch_sizes:
        log(f"critique at batch size {size}")
        r["batch_sizes"][size] = critique.run_critique(model, records, work / f"batch-{size}.jsonl", params,
                                                       "cpu", batch_size=size)
    log("the few-shot block's cost: the rows' own prompt tokens, and each generated token")
    r["anatomy"] = critique.anatomy(model, calls_few[0][0], calls_none[0][0], "cpu")
    from caitool.backends.hf import HFBackend

    probe = HFBackend(str(model))
    encoded = probe.encode(calls_few[0][0])
    r["prefix_tokens"] = len(os.path.commonprefix([tuple(e) for e in encoded]))
    r["few_prompt_tokens"] = sum(len(e) for e in encoded) / len(encoded)
    encoded = probe.encode(calls_none[0][0])
    r["none_prompt_tokens"] = sum(len(e) for e in encoded) / len(encoded)
    r["model_dir"] = str(model)
    # As a user runs it: the built-in model by name, its converted copy and the stored
    # few-shot block already cached (the runs above left them), torch's default threads.
    log("start-up: caitool critique on one answered record, --max-new-tokens 1, twice")
    one = write_records(work / "one.jsonl", 1)
    r["startup"] = [memory.run_subprocess("smollm2", "harmless", one, None) for _ in range(2)]
    return r


def section(args, info: dict, r: dict, command: str, date: str) -> str:
    v = r["varied"]
    drop, keep = median(v["drop"]), median(v["keep"])
    per_pair = {k: t.seconds / t.records for k, t in r["scoring"].items()}
    once = r["few"].extra.get("once", 0.0)
    warm = r["few"].seconds - once
    f = {
        "drop": keep.seconds / drop.seconds,
        "whole": per_pair["whole"] / per_pair["score"],
        "score": per_pair["score"] / per_pair["answer"],
        "limit": r["few"].tokens_per_s / r["bare_none"].tokens_per_s,
        "limit_warm": r["few"].tokens / warm / r["bare_none"].tokens_per_s,
        "judge": r["judge_few"].seconds / r["judge_none"].seconds,
        "judge_first": r["judge_few"].extra["first"] / r["judge_none"].extra["first"],
        # Sampled critiques end at different lengths with and without the examples: compare
        # the time per generated token.
        "critique": r["none"].tokens_per_s / r["few"].tokens_per_s,
        "critique_warm": r["none"].tokens_per_s / (r["few"].tokens / warm),
        "critique_time": r["few"].seconds / r["none"].seconds,
    }
    lengths = v["lengths"]
    at_limit = sum(n >= v["max_new_tokens"] for n in lengths)
    answer = r["scoring"]["answer"].extra["tokens"]

    def ms(key: str) -> str:
        return f"{per_pair[key] * 1000:.0f} ms/pair"

    def tok(t) -> str:
        return f"{t.tokens} tok, {t.tokens_per_s:.1f} tok/s"

    def judged(t) -> tuple[str, str]:
        return (f"{t.seconds / t.records * 1000:.0f} ms/pair",
                f"first batch {t.extra['first'] / t.records * 1000:.0f} ms/pair")

    rows = [
        ("finished rows leave the batch (`drop_finished=True`)", f"{drop.seconds:.1f} s", tok(drop)),
        ("the batch runs until its longest row ends (`model.generate`)", f"{keep.seconds:.1f} s", tok(keep)),
        (f"`score()` on compare's prompts, both orders, {args.pairs} pairs", ms("score"), ""),
        ("`score()`, every prompt whole (`reuse_prefix=False`)", ms("whole"), ""),
        (f"generating the answer ({answer} tokens, greedy)", ms("answer"), ""),
        ("compare's judging, few-shot examples", *judged(r["judge_few"])),
        ("compare's judging, no few-shot examples", *judged(r["judge_none"])),
        (f"caitool critique, few-shot examples, {args.records} records", f"{r['few'].seconds:.1f} s",
         tok(r["few"]) + f"; the block's one-time pass {once:.1f} s"),
        ("caitool critique, no few-shot examples", f"{r['none'].seconds:.1f} s", tok(r["none"])),
        ("bare model.generate, critique's batches without the few-shot examples",
         f"{r['bare_none'].seconds:.1f} s", tok(r["bare_none"])),
        *[(f"`caitool critique` on 1 record as a subprocess, run {i + 1}", f"first line {s['first_line']:.1f} s",
           f"exit {s['seconds']:.1f} s, peak {s['peak_mib']:.0f} MiB") for i, s in enumerate(r.get("startup", []))],
        *[(f"caitool critique, few-shot examples, `--batch-size {size}`", f"{t.seconds:.1f} s", tok(t))
          for size, t in sorted(r["batch_sizes"].items()) if size != DEFAULT_BATCH_SIZE],
    ]
    same = "identical" if v["same"] else f"NOT identical ({len(v['differ'])} of {v['rows']} rows differ)"
    targets = [
        verdict(f["drop"] >= TARGETS["drop"] and v["same"],
                f"finished rows cost nothing: the varied batch ran {f['drop']:.2f}x faster with "
                f"finished rows leaving it (target >= {TARGETS['drop']}x); greedy texts {same}"),
        verdict(f["whole"] >= TARGETS["whole"],
                f"judging from the cached prefix: `score()` on compare's prompts is {f['whole']:.1f}x "
                f"faster per pair than the whole-prompt path (target >= {TARGETS['whole']:.0f}x)"),
        verdict(f["score"] <= TARGETS["score"],
                f"judging at the cost of one prompt pass: `score()` per pair costs {f['score']:.2f}x "
                f"generating the {answer}-token answer (target <= {TARGETS['score']}x)"),
        verdict(f["limit"] >= TARGETS["limit"],
                f"close to the limit: critique generates at {f['limit']:.0%} of the tokens/s of bare "
                f"model.generate on the same rows without the few-shot block (target >= "
                f"{TARGETS['limit']:.0%}); {f['limit_warm']:.0%} without the block's one-time pass"),
        verdict(f["judge"] <= TARGETS["few_shot"],
                f"few-shot examples nearly free for judging ({args.pairs} pairs): {f['judge']:.2f}x "
                f"the time without them (target <= {TARGETS['few_shot']}x); first batch "
                f"{f['judge_first']:.2f}x"),
        verdict(f["critique"] <= TARGETS["few_shot"],
                f"few-shot examples nearly free for critique: {f['critique']:.2f}x the time per "
                f"generated token without them (target <= {TARGETS['few_shot']}x; in all "
                f"{f['critique_time']:.2f}x the time, for {r['few'].tokens} tokens against "
                f"{r['none'].tokens}); {f['critique_warm']:.2f}x without the block's one-time pass"),
    ]
    if r.get("startup"):
        first = min(s["first_line"] for s in r["startup"])
        targets.append(verdict(first <= TARGETS["startup"],
                               f"start-up: `caitool critique` on 1 answered record (`--max-new-tokens 1`, the "
                               f"built-in model and its few-shot block cached) printed its first line after "
                               f"{first:.1f} s (target <= {TARGETS['startup']:.0f} s)"))
    lines = [
        "## The built-in model (SmolLM2-135M-Instruct)",
        "",
        f"- date: {date}; command: `{command}`",
        f"- machine: {info['CPU']}, {info['RAM']}, torch threads: {info['torch threads']}, load "
        f"average at start {info['load average at start']}, at end {info['load average at end']}",
        f"- critique: {args.records} red-team records, `harmless` ({r['prefix_tokens']} shared few-shot "
        f"tokens; prompts of {r['few_prompt_tokens']:.0f} tokens on average, "
        f"{r['none_prompt_tokens']:.0f} without the examples), chat format, temperature 1, up to "
        f"{args.max_new_tokens} new tokens, batch size {DEFAULT_BATCH_SIZE}",
        f"- judging: {args.pairs} pairs from examples/judge-eval.jsonl, both orders, one batch; "
        f"{r['judge_few'].extra['prefix']} shared few-shot tokens",
        f"- the varied batch: {v['rows']} chat prompts, {len(varied.LONG)} asking for an essay "
        f"and {len(varied.SHORT)} for a word, a line or a short paragraph; greedy, repetition "
        f"penalty 1.2, up to {v['max_new_tokens']} new tokens, the default batch size; answers of "
        f"{', '.join(map(str, lengths))} tokens ({at_limit} of {v['rows']} at the limit, median "
        f"{lengths[len(lengths) // 2]}); median of {len(v['drop'])} alternating rounds",
        "",
        "| run | time | tokens |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Targets on the real model:",
        "",
        *[f"- {t}" for t in targets],
        "",
        *notes(args, info, r, f),
    ]
    return "\n".join(lines)


def notes(args, info: dict, r: dict, f: dict) -> list[str]:
    v, a = r["varied"], r["anatomy"]
    found = []
    if float(info["load average at start"].split()[0]) >= (os.cpu_count() or 1):
        found.append("- The machine was shared with other work (see the load averages): one torch "
                     "thread, and figures that move by tens of percent from one run to the next; each "
                     "ratio compares runs made back to back (the varied batch's two ways alternate).")
    (small, small_cost), (large, large_cost) = sorted(v["steps"].items())
    gain = varied.best_gain(v["steps"], v["lengths"])
    # A step's cost as fixed + per row, from the two measured sizes.
    per_row = (large_cost - small_cost) / (large - small)
    fixed = small_cost - small * per_row
    found.append(
        f"- Finished rows: a decoding step costs {large_cost * 1000:.0f} ms of CPU time over {large} "
        f"rows and {small_cost * 1000:.0f} ms over {small}, so about {fixed / large_cost:.0%} of a "
        f"step over {large} rows is the same whatever the rows (reading the model's weights, the "
        "per-layer calls) and a row that leaves saves only its own share. With these answer lengths "
        f"that cost model predicts {gain:.2f}x on decoding; the loop reached {f['drop']:.2f}x.")
    model = Path(r["model_dir"])
    prefix, own = r["prefix_tokens"], r["none_prompt_tokens"]
    new = r["few"].tokens / r["few"].records
    step = critique.attention_ceiling(model, prefix, int(own + new / 2))
    prompt = critique.attention_ceiling(model, prefix, int(own / 2), head=False)
    found.append(
        f"- The few-shot block, in CPU seconds for one batch of {min(args.records, DEFAULT_BATCH_SIZE)} "
        f"critique prompts on a backend that has cached the block: the prompt pass over the rows' own tokens "
        f"{a['few']['prompt']:.2f} s with it against {a['none']['prompt']:.2f} s without "
        f"({a['few']['prompt'] / a['none']['prompt']:.1f}x; counting arithmetic alone, the "
        f"{prefix} keys each own token attends to give {1 / prompt:.2f}x), each generated token "
        f"{a['few']['step'] * 1000:.0f} ms against {a['none']['step'] * 1000:.0f} ms "
        f"({a['few']['step'] / a['none']['step']:.2f}x; arithmetic alone {1 / step:.2f}x). The "
        f"block's own pass, once per process, took "
        f"{r['few'].extra.get('once', 0.0):.1f} s of this {args.records}-record run; a long run "
        "spreads it over all its records.")
    if f["limit"] < TARGETS["limit"] or f["critique"] > TARGETS["few_shot"]:
        found.append(
            f"- Critique with the few-shot block ({f['limit']:.0%} of bare generate's tokens/s, "
            f"{f['critique']:.2f}x the time per token of critique without it): in a run this short "
            "the block's one-time pass weighs most; without it "
            f"{f['limit_warm']:.0%} and {f['critique_warm']:.2f}x. The rest is the arithmetic above: "
            "every own token, in the prompt pass and generated, attends to the block.")
    if f["score"] > TARGETS["score"]:
        found.append(f"- `score()` against generating the answer ({f['score']:.2f}x): the same arithmetic (a "
                     "prompt pass from the cached block, then the options' last token over two rows per "
                     "prompt, against two one-token steps over one row per prompt), so the ratio sits at "
                     "1.0 within the noise.")
    if len(r["batch_sizes"]) > 1:
        found.append(f"- `--batch-size` ({args.records} records, one run each): " + ", ".join(
            f"{size}: {t.tokens_per_s:.1f} tok/s" for size, t in sorted(r["batch_sizes"].items())) + ".")
    if not v["same"]:
        found += [f"- differing texts (drop | keep), for \"{ask}\": {x[:80]!r} | {y[:80]!r}"
                  for ask, x, y in v["differ"][:3]]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--records", type=int, help=f"critique records ({DEFAULT_BATCH_SIZE}; quick 8)")
    parser.add_argument("--max-new-tokens", type=int, help="critique length (64; quick 32)")
    parser.add_argument("--pairs", type=int, help="judged pairs, one batch (8; quick 4)")
    parser.add_argument("--varied-tokens", type=int, help="token limit of the varied batch (128; quick 64)")
    parser.add_argument("--batch-sizes", type=int, nargs="*",
                        help=f"critique batch sizes besides {DEFAULT_BATCH_SIZE} (8; quick none)")
    parser.add_argument("--repeat", type=int, help="alternating rounds of the varied batch (2; quick 1)")
    parser.add_argument("--threads", default="auto", help="torch threads: a number, or auto (torch's "
                        "default, or 1 when the machine is already half loaded)")
    parser.add_argument("--output", default=str(DOCS), help="where to write the section ('-' for nowhere)")
    parser.add_argument("--results", help="also save the measurements to this file (a pickle)")
    parser.add_argument("--report-only", metavar="RESULTS",
                        help="measure nothing: write the section from measurements saved with --results")
    args = parser.parse_args()
    args.records = args.records or (8 if args.quick else DEFAULT_BATCH_SIZE)
    args.max_new_tokens = args.max_new_tokens or (32 if args.quick else 64)
    args.pairs = args.pairs or (4 if args.quick else 8)
    args.varied_tokens = args.varied_tokens or (64 if args.quick else 128)
    args.repeat = args.repeat or (1 if args.quick else 2)
    if args.batch_sizes is None:
        args.batch_sizes = [] if args.quick else [8]

    if args.report_only:
        output = args.output
        saved = pickle.loads(Path(args.report_only).read_bytes())
        args, info, results, command, date = (saved[k] for k in ("args", "info", "results", "command",
                                                                 "date"))
        args.output = output
    else:
        import torch

        from caitool.models import DEFAULT_MODEL, local_model

        threads = choose_threads(args.threads)
        torch.set_num_threads(threads)
        info = machine(threads, "cpu")
        log(f"threads {threads}, load {info['load average at start']}")
        model = Path(local_model(DEFAULT_MODEL))
        with tempfile.TemporaryDirectory(prefix="caitool-builtin-") as tmp:
            results = measure(args, model, Path(tmp))
        info["load average at end"] = loadavg()
        command = shown_command("bench/builtin.py", sys.argv[1:])
        date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        if args.results:
            Path(args.results).write_bytes(pickle.dumps(dict(
                args=args, info=info, results=results, command=command, date=date)))
    publish(section(args, info, results, command, date), args.output, "builtin")


if __name__ == "__main__":
    main()
