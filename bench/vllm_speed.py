"""The built-in real model (SmolLM2-135M-Instruct) on --backend vllm (vLLM's CPU build) against
--backend hf, each at float32 and at ``--dtype auto``: generation (the issue's measurement: 16
red-team prompts, one batch, greedy, up to 64 new tokens) and critique (8 records, sampled),
through caitool's own stages, and the engine's start-up and the model's load apart.

Runs in the vLLM venv, which has both backends (`make install-vllm`, then `make bench-vllm`;
about 10 minutes on 2 cores). Each configuration runs in a process of its own with torch's
default threads, as a command does: the model loads (timed: "start-up"; for vLLM the engine,
torch.compile warm-up included), one warm-up batch of 2 records runs, then the timed batches go
through caitool's generate stage (twice; the faster is reported, the steady state) and its
critique stage (the answers given, so it generates the critiques only). Tokens are the outputs'
tokens, counted with the model's tokenizer.

Writes its section into docs/benchmarks.md between the markers ``vllm:start`` and
``vllm:end``; ``--report-only FILE`` writes it from rows saved with ``--results FILE``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DOCS, ROOT, loadavg, log, publish, shown_command, verdict

RECORDS = 8
PROMPTS = 16
# Each configuration runs with torch's default threads, as `caitool` does; vLLM's CPU build
# binds its own (one core here, the other left to the engine's front end).
CONFIGS = [("hf", "float32"), ("hf", "auto"), ("vllm", "float32"), ("vllm", "auto")]
GREEDY = {"max_new_tokens": 64, "temperature": 0.0}
SAMPLING = {"max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3,
            "seed": 0}
ANSWER = ("Sure. Here is what I would do: first find out where they live, then wait until "
          "nobody is around.")


def records(count: int, offset: int = 0, answered: bool = True) -> list[dict]:
    lines = (ROOT / "examples/red_team.jsonl").read_text().splitlines()[offset:offset + count]
    out = []
    for i, line in enumerate(lines):
        record = json.loads(line)
        record.setdefault("id", f"bench-{offset + i}")
        if answered:
            record["response"] = ANSWER
        out.append(record)
    return out


def one(backend_name: str, dtype: str, count: int, prompts: int) -> dict:
    """One configuration, measured in this process."""
    import torch

    from caitool import constitution
    from caitool.backends.base import SamplingParams
    from caitool.backends.registry import create
    from caitool.stages import supervised

    rules = constitution.load("harmless")
    options = {"dtype": dtype} if backend_name == "vllm" else {"dtype": dtype, "device": "cpu"}
    backend = create(backend_name, "smollm2", **options)
    started = time.monotonic()
    backend.has_chat_template()          # loads the model (vLLM: starts the engine)
    start = time.monotonic() - started

    def tokens(texts: list[str]) -> int:
        return sum(len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    greedy = supervised.Sampler(backend, SamplingParams(**GREEDY))
    supervised.generate(greedy, records(2, offset=50, answered=False))
    generation = []
    for _ in range(2):
        batch = records(prompts, answered=False)
        started = time.monotonic()
        result = supervised.generate(greedy, batch)
        seconds = time.monotonic() - started
        if result.failed:
            raise SystemExit(f"generate failed: {result.failed}")
        generation.append((seconds, tokens([r["response"] for r in result.records])))
    gen_s, gen_tokens = min(generation)

    sampler = supervised.Sampler(backend, SamplingParams(**SAMPLING))
    supervised.critique(sampler, rules, records(2, offset=50))
    batch = records(count)
    started = time.monotonic()
    result = supervised.critique(sampler, rules, batch)
    seconds = time.monotonic() - started
    if result.failed:
        raise SystemExit(f"critique failed: {result.failed}")
    critique_tokens = tokens([r["revisions"][-1]["critique"] for r in result.records])
    backend.close()
    return {"backend": backend_name, "dtype": dtype, "threads": torch.get_num_threads(),
            "start_s": round(start, 1), "prompts": prompts,
            "generate_s": round(gen_s, 2), "generate_rounds_s": [round(g[0], 2) for g in generation],
            "generate_tokens": gen_tokens, "generate_tokens_per_s": round(gen_tokens / gen_s, 1),
            "records": count, "critique_s": round(seconds, 1), "tokens": critique_tokens,
            "tokens_per_s": round(critique_tokens / seconds, 1),
            "records_per_s": round(count / seconds, 2)}


def measure(count: int, prompts: int) -> list[dict]:
    rows = []
    for backend_name, dtype in CONFIGS:
        done = subprocess.run([sys.executable, __file__, "--one", backend_name, dtype,
                               "--records", str(count), "--prompts", str(prompts)],
                              capture_output=True, text=True, timeout=3600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            raise SystemExit(f"{backend_name}/{dtype} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(lines[-1][len("RESULT "):]))
        log(f"done: {rows[-1]}")
    return rows


def section(saved: dict) -> str:
    rows = saved["rows"]
    first = rows[0]
    lines = [
        "## vLLM's CPU build against the hf backend (`make bench-vllm`)",
        "",
        f"- date: {saved['date']}",
        f"- command: `{saved['command']}` (in the vLLM venv)",
        f"- machine: {saved['cpus']} logical cores; load average {saved['load']}",
        f"- generation: {first['prompts']} red-team prompts in one batch, caitool's generate "
        f"stage, sampling {saved['greedy']}; the faster of two runs after a warm-up batch",
        f"- critique: {first['records']} red-team records, `harmless` constitution, the answers "
        f"given; sampling {saved['sampling']}",
        "- `auto`: each backend's own rule; on an x86 CPU with bfloat16 instructions both "
        "generate in bfloat16 (hf: the CPU's flags and a model of hidden size 512 or more; "
        "vLLM: its CPU platform downcasts a float32 checkpoint to bfloat16)",
        "",
        "| backend | dtype | torch threads | start-up s | generate s (runs) | tokens | "
        "generate tokens/s | critique s | tokens | critique tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(str(x) for x in r["generate_rounds_s"])
        lines.append(f"| {r['backend']} | {r['dtype']} | {r['threads']} | {r['start_s']} | "
                     f"{r['generate_s']} ({runs}) | {r['generate_tokens']} | "
                     f"{r['generate_tokens_per_s']} | {r['critique_s']} | {r['tokens']} | "
                     f"{r['tokens_per_s']} |")
    lines.append("")
    for dtype in ("float32", "auto"):
        hf = [r for r in rows if r["backend"] == "hf" and r["dtype"] == dtype]
        vllm = [r for r in rows if r["backend"] == "vllm" and r["dtype"] == dtype]
        if not (hf and vllm):
            continue
        hf, vllm = hf[0], vllm[0]
        ratio = hf["generate_tokens_per_s"] / vllm["generate_tokens_per_s"]
        critique_ratio = hf["tokens_per_s"] / vllm["tokens_per_s"]
        claim = (f"generation at {dtype}: the hf backend makes {ratio:.2f}x the tokens/s of "
                 f"vLLM (target >= 1.0x); critique {critique_ratio:.2f}x")
        lines.append(f"- {verdict(ratio >= 1.0, claim)}; vLLM's engine takes "
                     f"{vllm['start_s']} s to start against {hf['start_s']} s to load the "
                     "model in process")
    lines.append("- start-up is the engine's first start in the process, torch.compile warm-up "
                 "included; later starts reuse vLLM's compile cache.")
    lines += [f"- {note}" for note in saved.get("notes", [])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("BACKEND", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--prompts", type=int, default=PROMPTS)
    parser.add_argument("--output", default=str(DOCS), help="where to write the section ('-' for nowhere)")
    parser.add_argument("--results", help="also save the rows to this JSON file")
    parser.add_argument("--report-only", metavar="RESULTS", help="write the section from saved rows")
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(*args.one, args.records, args.prompts)), flush=True)
        return
    if args.report_only:
        saved = json.loads(Path(args.report_only).read_text())
    else:
        load = loadavg()
        rows = measure(args.records, args.prompts)
        saved = {"rows": rows, "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                 "command": shown_command("bench/vllm_speed.py", sys.argv[1:]),
                 "cpus": os.cpu_count(), "load": f"{load} at start, {loadavg()} at end",
                 "sampling": SAMPLING, "greedy": GREEDY}
        if args.results:
            Path(args.results).write_text(json.dumps(saved, indent=1))
    publish(section(saved), args.output, "vllm")


if __name__ == "__main__":
    main()
