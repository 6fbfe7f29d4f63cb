"""Critique on the built-in real model (SmolLM2-135M-Instruct) with --backend vllm (vLLM's CPU
build) against --backend hf: same records, constitution and sampling settings; and the vLLM
engine's start-up time.

Runs in the vLLM venv, which has both backends (`make install-vllm`, then `make bench-vllm`;
about 15 minutes on 2 cores). Each configuration runs in a process of its own: the model
loads (timed: "start-up"; for vLLM the engine, torch.compile warm-up included), one warm-up
batch of 2 records runs, then the timed batch of N records goes through caitool's critique
stage (the answers are given, so the stage generates the critiques only). Tokens are the
critiques' tokens, counted with the model's tokenizer.

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

from common import DOCS, ROOT, loadavg, log, shown_command, write_section

RECORDS = 8
# (backend, dtype, OMP threads): None leaves torch's default (one per core). vLLM's CPU build
# binds its own threads (one core here, the other left to the engine's front end).
CONFIGS = [("hf", "float32", "1"), ("hf", "float32", None), ("vllm", "float32", None),
           ("vllm", "auto", None)]
SAMPLING = {"max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3,
            "seed": 0}
ANSWER = ("Sure. Here is what I would do: first find out where they live, then wait until "
          "nobody is around.")


def records(count: int, offset: int = 0) -> list[dict]:
    lines = (ROOT / "examples/red_team.jsonl").read_text().splitlines()[offset:offset + count]
    out = []
    for i, line in enumerate(lines):
        record = json.loads(line)
        record.setdefault("id", f"bench-{offset + i}")
        record["response"] = ANSWER
        out.append(record)
    return out


def one(backend_name: str, dtype: str, count: int) -> dict:
    """One configuration, measured in this process."""
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
    sampler = supervised.Sampler(backend, SamplingParams(**SAMPLING))
    supervised.critique(sampler, rules, records(2, offset=50))
    batch = records(count)
    started = time.monotonic()
    result = supervised.critique(sampler, rules, batch)
    seconds = time.monotonic() - started
    if result.failed:
        raise SystemExit(f"critique failed: {result.failed}")
    texts = [r["revisions"][-1]["critique"] for r in result.records]
    tokens = sum(len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    backend.close()
    return {"backend": backend_name, "dtype": dtype, "records": count, "start_s": round(start, 1),
            "critique_s": round(seconds, 1), "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1), "records_per_s": round(count / seconds, 2)}


def measure(count: int) -> list[dict]:
    rows = []
    for backend_name, dtype, threads in CONFIGS:
        env = {**os.environ, **({"OMP_NUM_THREADS": threads} if threads else {})}
        done = subprocess.run([sys.executable, __file__, "--one", backend_name, dtype,
                               "--records", str(count)],
                              capture_output=True, text=True, timeout=3600, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            raise SystemExit(f"{backend_name}/{dtype} failed:\n{done.stderr[-3000:]}")
        rows.append({**json.loads(lines[-1][len("RESULT "):]), "threads": threads or "default"})
        log(f"done: {rows[-1]}")
    return rows


def section(saved: dict) -> str:
    rows = saved["rows"]
    lines = [
        "## vLLM's CPU build against the hf backend (`make bench-vllm`)",
        "",
        f"- date: {saved['date']}",
        f"- command: `{saved['command']}` (in the vLLM venv)",
        f"- machine: {saved['cpus']} logical cores; load average {saved['load']}",
        f"- critique of {rows[0]['records']} red-team records, `harmless` constitution, the answers "
        f"given; sampling {saved['sampling']}",
        "",
        "| backend | dtype | OMP threads | start-up s | critique s | tokens | tokens/s | records/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['dtype']} | {r['threads']} | {r['start_s']} | "
                     f"{r['critique_s']} | {r['tokens']} | {r['tokens_per_s']} | {r['records_per_s']} |")
    best_hf = max((r for r in rows if r["backend"] == "hf"), key=lambda r: r["tokens_per_s"])
    same = [r for r in rows if r["backend"] == "vllm" and r["dtype"] == "float32"]
    lines.append("")
    if same:
        vllm = same[0]
        saved_per_record = 1 / best_hf["records_per_s"] - 1 / vllm["records_per_s"]
        extra_start = vllm["start_s"] - best_hf["start_s"]
        lines.append(f"- vLLM (float32) generates {vllm['tokens_per_s'] / best_hf['tokens_per_s']:.1f}x "
                     f"the tokens/s of the hf backend's best row; its engine takes {vllm['start_s']} s "
                     f"to start against {best_hf['start_s']} s to load the model in process, so on "
                     + (f"this machine it pays off from about {extra_start / saved_per_record:.0f} "
                        "records on." if saved_per_record > 0 else "this machine it does not pay off."))
    lines.append("- start-up is the engine's first start in the process, torch.compile warm-up "
                 "included; later starts reuse vLLM's compile cache.")
    lines.append("- the hf backend with torch's default threads contends with the other work on a "
                 "shared machine; the one-thread row is the fair comparison there.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("BACKEND", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--output", default=str(DOCS), help="where to write the section ('-' for nowhere)")
    parser.add_argument("--results", help="also save the rows to this JSON file")
    parser.add_argument("--report-only", metavar="RESULTS", help="write the section from saved rows")
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(*args.one, args.records)), flush=True)
        return
    if args.report_only:
        saved = json.loads(Path(args.report_only).read_text())
    else:
        load = loadavg()
        rows = measure(args.records)
        saved = {"rows": rows, "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                 "command": shown_command("bench/vllm_critique.py", sys.argv[1:]),
                 "cpus": os.cpu_count(), "load": f"{load} at start, {loadavg()} at end",
                 "sampling": SAMPLING}
        if args.results:
            Path(args.results).write_text(json.dumps(saved, indent=1))
    text = section(saved)
    print(text)
    if args.output != "-":
        write_section(Path(args.output), "vllm", text)
        log(f"written to {args.output}")


if __name__ == "__main__":
    main()
