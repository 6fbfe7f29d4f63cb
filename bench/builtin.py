"""The built-in real model's speed in caitool's own commands, against bare model.generate.

On SmolLM2-135M-Instruct (the default model, de-quantised from the packaged GGUF file),
``caitool critique`` on red-team records at the command's batch size, with and without the
shared few-shot prefix, against bare ``model.generate`` on the same prompts, batches and
sampling settings. Writes its table into docs/benchmarks.md between the markers below
(``bench/run.py`` keeps that section when it rewrites the file).

    python bench/builtin.py                 # 8 records, 48 new tokens
    python bench/builtin.py --records 16
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Timing, log, machine, run_bare, run_critique, write_records  # noqa: E402

START, END = "<!-- builtin:start -->", "<!-- builtin:end -->"


def row(name: str, t: Timing, base: Timing) -> str:
    return (f"| {name} | {t.seconds:.1f} | {t.tokens} | {t.tokens_per_s:.1f} | "
            f"{t.seconds / base.seconds:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"))
    args = parser.parse_args()

    import torch

    from caitool.models import DEFAULT_MODEL, local_model

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    info = machine(threads, "cpu")
    model_dir = Path(local_model(DEFAULT_MODEL))
    with tempfile.TemporaryDirectory(prefix="caitool-builtin-") as tmp:
        work = Path(tmp)
        records = write_records(work / "critique.jsonl", args.records)
        calls: list = []
        log(f"critique, {args.records} records, prefix reuse on")
        on = run_critique(model_dir, records, work / "on.jsonl", args.max_new_tokens, "cpu", True, calls)
        log("critique, prefix reuse off")
        off = run_critique(model_dir, records, work / "off.jsonl", args.max_new_tokens, "cpu", False)
        log("bare model.generate on the same batches")
        bare = run_bare(model_dir, calls, "cpu")
    lines = [
        START,
        "## The built-in model (SmolLM2-135M-Instruct)",
        "",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; command: "
        f"`{' '.join(['python bench/builtin.py', *sys.argv[1:]])}`",
        f"- machine: {info['CPU']}, {info['RAM']}, {threads} torch threads, load average at "
        f"end {os.getloadavg()[0]:.1f}",
        f"- {args.records} red-team records, `harmless` few-shot critique prompts (chat "
        f"format), temperature 1, up to {args.max_new_tokens} new tokens, batch size 16",
        "",
        "| run | seconds | tokens generated | tokens/s | time vs bare generate |",
        "|---|---|---|---|---|",
        row("bare model.generate (same prompts and batches)", bare, bare),
        row("caitool critique, shared prefix reused", on, bare),
        row("caitool critique, no prefix reuse", off, bare),
        "",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    path = Path(args.output)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    log(f"written to {path}")


if __name__ == "__main__":
    main()
