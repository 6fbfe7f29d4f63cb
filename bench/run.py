"""caitool's speed, measured against the model itself on this machine, in one run.

Builds a random-weight Llama-architecture model of about 25M parameters offline, then times:

1. ``critique`` with the constitution's few-shot examples and without them, against bare
   ``model.generate`` on the prompts without them (and with them), against a loop that
   calls the model one record at a time, and at a few batch sizes;
2. ``compare``'s judging with and without few-shot examples, and option scoring
   (``score()``) against generating the answer and against running every prompt whole;
3. time to the first output line and peak memory of ``caitool critique`` on 1,000 and
   100,000 records;
4. a cProfile of ``caitool critique``.

The table goes to stdout and, with the machine, the command and the targets, to
docs/benchmarks.md (bench/builtin.py adds the built-in real model's section). Ratios are
what to read: every row comes from the same run on the same machine.

    python bench/run.py            # full run (about 15 minutes on two busy CPU cores)
    python bench/run.py --quick    # smaller sizes, a few minutes
    python bench/run.py --results r.pickle; python bench/run.py --report-only r.pickle
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import pickle
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import critique  # noqa: E402
import judge  # noqa: E402
import memory  # noqa: E402
import profiling  # noqa: E402
import report  # noqa: E402
from common import (  # noqa: E402
    DEFAULT_BATCH_SIZE,
    DOCS,
    build_bench_model,
    choose_threads,
    judge_pairs,
    kept_sections,
    loadavg,
    log,
    machine,
    median,
    shown_command,
    without_examples,
    write_records,
)

# 'caitool compare' batches of this many pairs in the judging measurements.
JUDGE_BATCH = 32


def measure_critique(args, work: Path, model: Path, device: str, results: dict) -> None:
    """Every critique run, alternating round by round so that each kind sees the same share
    of the machine's load."""
    from caitool import constitution
    from caitool.backends.base import SamplingParams

    rules = constitution.load("harmless")
    bare_rules = without_examples(rules)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0)
    records = write_records(work / "critique.jsonl", args.records)
    runs: dict[str, list] = {k: [] for k in ("few", "none", "few_off", "bare_few", "bare_none",
                                             "single")}
    calls_few: list = []
    calls_none: list = []
    for round_ in range(1, args.repeat + 1):
        step = f"round {round_}/{args.repeat}:"
        log(f"{step} critique, {args.records} records, few-shot examples, prefix reuse on")
        recorded: list = []
        runs["few"].append(critique.run_critique(model, records, work / "few.jsonl", params, device,
                                                 calls=recorded))
        calls_few = calls_few or recorded
        log(f"{step} critique, no few-shot examples")
        recorded = []
        runs["none"].append(critique.run_critique(model, records, work / "none.jsonl", params, device,
                                                  calls=recorded, rules=bare_rules))
        calls_none = calls_none or recorded
        log(f"{step} critique, few-shot examples, prefix reuse off")
        runs["few_off"].append(critique.run_critique(model, records, work / "off.jsonl", params, device,
                                                     reuse_prefix=False))
        log(f"{step} bare model.generate on critique's batches, without the few-shot examples")
        runs["bare_none"].append(critique.run_bare(model, calls_none, device))
        log(f"{step} bare model.generate on critique's batches, with them")
        runs["bare_few"].append(critique.run_bare(model, calls_few, device))
        log(f"{step} one record per call, {args.single} records")
        runs["single"].append(critique.run_one_at_a_time(model, calls_few, args.single, device))
    results.update({name: median(timings) for name, timings in runs.items()})
    # The batch sizes alternate among themselves, the default included, round by round.
    sizes = sorted({DEFAULT_BATCH_SIZE, *args.batch_sizes}) if args.batch_sizes else []
    sweep: dict[int, list] = {size: [] for size in sizes}
    for round_ in range(1, args.repeat + 1):
        for size in sweep:
            log(f"round {round_}/{args.repeat}: critique at batch size {size}")
            sweep[size].append(critique.run_critique(model, records, work / f"batch-{size}.jsonl", params,
                                                     device, batch_size=size))
    results["batch_sizes"] = {size: median(timings) for size, timings in sweep.items()}
    log("the few-shot block's cost: the rows' own prompt tokens, and each generated token")
    results["anatomy"] = critique.anatomy(model, calls_few[0][0], calls_none[0][0], device)
    from caitool.backends.hf import HFBackend

    probe = HFBackend(str(model), device=device)
    results["model_params"] = stored_parameters(model) / 1e6
    for name, calls in (("few", calls_few), ("none", calls_none)):
        encoded = probe.encode(calls[0][0])
        results[f"{name}_prompt_tokens"] = sum(len(e) for e in encoded) / len(encoded)
    encoded = probe.encode(calls_few[0][0])
    results["prefix_tokens"] = len(os.path.commonprefix([tuple(e) for e in encoded]))


def stored_parameters(model: Path) -> int:
    """The checkpoint's parameter count, read from its weights file: the loaded model's
    linear layers are packed for oneDNN into buffers, which parameters() no longer counts."""
    from safetensors import safe_open

    total = 0
    for path in sorted(model.glob("*.safetensors")):
        with safe_open(str(path), "pt") as weights:
            for name in weights.keys():
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def measure_judging(args, model: Path, device: str, results: dict) -> None:
    from caitool import constitution

    rules = constitution.load("harmless")
    items = judge_pairs(args.pairs)
    runs: dict[str, list] = {"few": [], "none": []}
    asked: list = []
    for round_ in range(1, args.repeat + 1):
        log(f"round {round_}/{args.repeat}: judging {args.pairs} pairs, with and without few-shot "
            "examples")
        runs["few"].append(judge.run_judging(model, rules, items, args.judge_batch, device,
                                             asked=asked if round_ == 1 else None))
        runs["none"].append(judge.run_judging(model, without_examples(rules), items, args.judge_batch,
                                              device))
    for name, timings in runs.items():
        chosen = median(timings)
        chosen.extra["first"] = statistics.median(t.extra["first"] for t in timings)
        results[f"judge_{name}"] = chosen
    log(f"score() against generating the answer and against whole prompts, {args.pairs} pairs")
    results["scoring"] = judge.compare_scoring(model, asked, args.judge_batch, device, old_path=True)
    from caitool.backends.hf import HFBackend

    encoded = HFBackend(str(model), device=device).encode(asked[:2 * args.judge_batch])
    results["judge_prompt_tokens"] = sum(len(e) for e in encoded) / len(encoded)


def measure_memory(args, work: Path, micro: Path, threads: int, results: dict) -> None:
    constitution = memory.plain_constitution(work / "plain.json")
    results["memory"] = {}
    for size in args.memory_sizes:
        log(f"first line and memory, {size:,} records")
        inputs = write_records(work / f"memory-{size}.jsonl", size)
        results["memory"][size] = memory.run_subprocess(micro, constitution, inputs, threads)
        inputs.unlink()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--records", type=int, help="critique records (default 32; quick 16)")
    parser.add_argument("--single", type=int, help="records for the one-at-a-time loop (4; 2)")
    parser.add_argument("--pairs", type=int, help="judged pairs (32; quick 8)")
    parser.add_argument("--max-new-tokens", type=int, help="critique length (64; 32)")
    parser.add_argument("--batch-sizes", type=int, nargs="*",
                        help=f"critique batch sizes besides {DEFAULT_BATCH_SIZE} (8 32; quick none)")
    parser.add_argument("--judge-batch", type=int, default=JUDGE_BATCH, help="pairs per judging batch")
    parser.add_argument("--memory-sizes", type=int, nargs=2,
                        help="input sizes for first line and memory (1000 100000; 1000 10000)")
    parser.add_argument("--profile-records", type=int, help="records in the profiled run (64; 16)")
    parser.add_argument("--repeat", type=int, help="alternating rounds of the critique and judging "
                        "timings, medians reported (2; quick 1)")
    parser.add_argument("--threads", default="auto",
                        help="torch threads: a number, or auto (torch's default, or 1 when the "
                             "machine is already half loaded: oversubscribed threads spin)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--output", default=str(DOCS), help="where to write the report ('-' for nowhere)")
    parser.add_argument("--workdir", help="keep models and files here (default: a temp dir)")
    parser.add_argument("--results", help="also save the measurements to this file (a pickle)")
    parser.add_argument("--report-only", metavar="RESULTS",
                        help="measure nothing: write the report from measurements saved with --results")
    args = parser.parse_args()
    quick = args.quick
    args.records = args.records or (16 if quick else 32)
    args.repeat = args.repeat or (1 if quick else 2)
    args.single = args.single or (2 if quick else 4)
    args.pairs = args.pairs or (8 if quick else 32)
    args.max_new_tokens = args.max_new_tokens or (32 if quick else 64)
    if args.batch_sizes is None:
        args.batch_sizes = [] if quick else [8, 32]
    args.memory_sizes = args.memory_sizes or ([1000, 10000] if quick else [1000, 100000])
    args.profile_records = args.profile_records or (16 if quick else 64)
    return args


def measure(args, threads: int, device: str) -> dict:
    from caitool.testing.tiny import build

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="caitool-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        log("building models")
        model = build_bench_model(work)
        # For first-line and memory runs the model should cost next to nothing.
        micro = build(work / "micro", hidden_size=32, layers=1, heads=2)
        measure_critique(args, work, model, device, results)
        measure_judging(args, model, device, results)
        measure_memory(args, work, micro, threads, results)
        log(f"profiling caitool critique, {args.profile_records} records")
        results["profile"] = profiling.profile_critique(model, work, args.profile_records, threads,
                                                        args.max_new_tokens)
    return results


def main() -> None:
    args = parse_args()
    if args.report_only:
        # The saved run's settings, machine and figures; only the report is new.
        output = args.output
        saved = pickle.loads(Path(args.report_only).read_bytes())
        args, info, results, command, date = (saved[k] for k in ("args", "info", "results", "command",
                                                                 "date"))
        args.output = output
    else:
        import torch
        import transformers

        # Model saving draws progress bars; the benchmark reports its own progress.
        transformers.utils.logging.disable_progress_bar()
        threads = choose_threads(args.threads)
        torch.set_num_threads(threads)
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        info = machine(threads, device)
        log(f"threads {threads}, device {device}, load {info['load average at start']}")
        results = measure(args, threads, device)
        info["load average at end"] = loadavg()
        command = shown_command("bench/run.py", sys.argv[1:])
        date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        if args.results:
            Path(args.results).write_bytes(pickle.dumps(dict(
                args=args, info=info, results=results, command=command, date=date)))
    text = report.render(args, info, results, command, date)
    print(text)
    if args.output != "-":
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The real model's sections (bench/builtin.py, make demo) close the file; keep them.
        kept = kept_sections(path)
        path.write_text(text + ("\n" + kept.rstrip() + "\n" if kept else ""))
        log(f"written to {args.output}")


if __name__ == "__main__":
    main()
