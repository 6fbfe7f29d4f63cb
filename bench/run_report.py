"""`caitool report` on a made-up run directory of 100,000 records: time and peak memory.

The run holds what ``make all`` writes, each record file at the given size: the supervised
stage's last round (two rounds of principle, critique and revision per record), preference
labels with both orders' judgments, the evaluator's judgments of three systems and their
answers, the judge's multiple-choice rows, and the trainers' metrics. Each size runs
``caitool report`` in a fresh process; the figures are its wall time, its peak resident size
and the page's size (the page samples its browsable records, so it should not grow).

    python bench/run_report.py                   # 10,000 and 100,000 records; writes docs/benchmarks.md
    python bench/run_report.py --sizes 2000 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

PRINCIPLES = [f"principle-{i}" for i in range(16)]
WORDS = "the a answer help safe harm person ask because better kind clear can will not".split()
SYSTEMS = ("base", "sl-cai", "rl-cai")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def make_run(folder: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def supervised(i: int) -> dict:
        answer = sentence(rng, 40)
        rounds = []
        for _ in range(2):
            revised = answer if rng.random() < 0.3 else answer + " " + sentence(rng, 5)
            rounds.append({"principle": rng.choice(PRINCIPLES), "critique": sentence(rng, 20),
                           "revision": revised})
            answer = revised
        return {"id": f"p{i}", "prompt": sentence(rng, 12), "initial_response": rounds[0]["revision"],
                "revisions": rounds, "response": answer,
                "provenance": {"generate": {"backend": "hf", "model": "made-up"}}}

    def preference(i: int) -> dict:
        p = 0.5 + rng.random() / 2
        judged = [{"principle": rng.choice(PRINCIPLES), "order": order, "p_first": rng.random()}
                  for order in ("ab", "ba")]
        return {"id": f"p{i}", "prompt": sentence(rng, 12), "chosen": sentence(rng, 30),
                "rejected": sentence(rng, 30), "p_chosen": p, "tie": False,
                "orders_agree": rng.random() < 0.6, "judgments": judged,
                "provenance": {"compare": {"model": "made-up", "constitution": "harmless"}}}

    write_jsonl(folder / "round2.jsonl", (supervised(i) for i in range(count)))
    write_jsonl(folder / "prefs.jsonl", (preference(i) for i in range(count)))
    for system in SYSTEMS:
        write_jsonl(folder / f"answers-{'base' if system == 'base' else system.split('-')[0]}.jsonl",
                    ({"id": f"e{i}", "prompt": sentence(rng, 12), "response": sentence(rng, 30)}
                     for i in range(count)))
    write_jsonl(folder / "judgments.jsonl",
                ({"dimension": "harmlessness", "id": f"e{i}", "a": "base", "b": "sl-cai",
                  "p_a": rng.random(), "agree": True, "details": []} for i in range(count)))
    write_jsonl(folder / "judge-rows.jsonl",
                ({"file": "judge.jsonl", "line": i + 1, "credit": float(rng.random() < 0.7),
                  "correct_scores": [rng.gauss(-1, 1)], "incorrect_scores": [rng.gauss(-2, 1)]}
                 for i in range(min(count, 10_000))))
    write_jsonl(folder / "rm-metrics.jsonl", [
        {"command": "train-rm", "step": 10, "heldout_pairs": 100, "heldout_accuracy": 0.7,
         "heldout_mean_margin": 0.4, "heldout_by_file": {"prefs.jsonl": {
             "heldout_pairs": 100, "heldout_accuracy": 0.7, "heldout_mean_margin": 0.4}},
         "heldout_scores": [[rng.gauss(1, 1), rng.gauss(0, 1)] for _ in range(100)]}])
    write_jsonl(folder / "ppo-metrics.jsonl",
                ({"command": "train-ppo", "step": s, "objective/scores": rng.random(),
                  "objective/kl": s / 100, "ended_fraction": rng.random()} for s in range(1, 101)))
    (folder / "eval.json").write_text(json.dumps({
        "systems": list(SYSTEMS), "files": {"base": "answers-base.jsonl", "sl-cai": "answers-sl.jsonl",
                                            "rl-cai": "answers-rl.jsonl"},
        "pairs": [{"a": "base", "b": "sl-cai", "n": count,
                   "harmlessness": {"n": count, "win_rate": 0.4, "ci": [0.39, 0.41]}}],
        "elo": {"reference": "base", "harmlessness": {s: {"elo": 10.0 * k, "ci": None}
                                                      for k, s in enumerate(SYSTEMS)},
                "helpfulness": {s: {"elo": -5.0 * k, "ci": None} for k, s in enumerate(SYSTEMS)}}}))


def measure(folder: Path) -> dict:
    page = folder / "report.html"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "caitool", "report", str(folder), "-o", str(page)],
                          capture_output=True, text=True, env={**os.environ, "CAITOOL_QUIET": "1"})
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"caitool report failed: {done.stderr.strip()}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "rss_mib": rss, "page_kib": page.stat().st_size / 1024,
            "warnings": len(done.stderr.strip().splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    for count in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="caitool-report-bench-") as work:
            folder = Path(work) / "run"
            make_run(folder, count)
            size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
            # A fresh process per size; its peak resident size is the children's maximum so
            # far, so sizes run smallest first.
            row = {"count": count, "run_mib": size, **measure(folder)}
        rows.append(row)
        print(f"{count:>8,} records ({row['run_mib']:.0f} MiB): {row['seconds']:.1f} s, "
              f"peak RSS {row['rss_mib']:.0f} MiB, page {row['page_kib']:.0f} KiB", file=sys.stderr)
    from dedup import cpu_name

    lines = [
        "## `caitool report` on a large run (`make bench-report`)",
        "",
        f"- date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- command: `python bench/run_report.py --sizes {args.sizes}`",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores; load average at start "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "- a made-up run directory, each record file (last supervised round with two rounds per "
        "record, preference labels with both orders' judgments, the evaluator's judgments, three "
        "systems' answers) at the given number of records; `caitool report` in a fresh process",
        "",
        "| records per file | run directory | time | peak RSS | page |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['count']:,} | {r['run_mib']:.0f} MiB | {r['seconds']:.1f} s | "
              f"{r['rss_mib']:.0f} MiB | {r['page_kib']:.0f} KiB |" for r in rows]
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        lines += ["", f"{b['count'] // a['count']}x the records took {b['seconds'] / a['seconds']:.1f}x "
                      f"the time and {b['rss_mib'] / a['rss_mib']:.2f}x the peak memory; the page "
                      f"stays {b['page_kib']:.0f} KiB (the browsable sample is bounded)."]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        from common import DOCS, write_section

        write_section(DOCS, "report", section)


if __name__ == "__main__":
    main()
