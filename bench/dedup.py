"""red-team's de-duplication at the paper's scale: time and peak memory, no model needed.

The paper generated 140,335 red-team prompts. This makes up prompts of the same length (a
sentence of 8 to 30 words from a vocabulary of its own, a fifth of them near copies of an
earlier prompt with a word or two changed, a twentieth exact copies with other case and
punctuation), then runs each size in a fresh process through caitool's sieve index
(``caitool.near_duplicates.DuplicateIndex``, batches of 64 as the command checks them) and,
for comparison, through datasketch's MinHashLSH with the same number of permutations, where
datasketch is installed. Each figure: wall time, peak allocated memory while it runs (and
the process's peak resident size), prompts refused.

    python bench/dedup.py                  # 15,000 and 150,000 prompts; writes docs/benchmarks.md
    python bench/dedup.py --sizes 1000     # a quick look; --no-write leaves the docs alone
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BATCH = 64
WORDS = [f"{a}{b}" for a in ("bra", "cle", "dro", "fen", "gal", "hoi", "jum", "kre", "lop", "mav",
                             "nes", "pux", "qui", "ros", "sty", "tev", "ulm", "vax", "wob", "zin")
         for b in ("a", "ek", "il", "on", "usk", "ert", "ine", "olt", "am", "yx")]


def prompts(count: int, seed: int = 0) -> list[str]:
    """Made-up prompts: most new, a fifth near copies (a word or two changed), a twentieth
    exact copies in other case and punctuation."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(count):
        roll = rng.random()
        if out and roll < 0.2:
            words = rng.choice(out).rstrip("?").split()
            for _ in range(1 + (len(words) > 20)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            out.append(" ".join(words) + "?")
        elif out and roll < 0.25:
            out.append(rng.choice(out).upper().replace("?", " !"))
        else:
            length = rng.randint(8, 30)
            out.append(" ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + "?")
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_caitool(texts: list[str]) -> int:
    from caitool.near_duplicates import DuplicateIndex

    index = DuplicateIndex(0.7)
    refused = 0
    for start in range(0, len(texts), BATCH):
        chunk = texts[start:start + BATCH]
        names = [str(start + i) for i in range(len(chunk))]
        refused += sum(m is not None for m in index.check_texts(names, chunk))
    return refused


def run_datasketch(texts: list[str]) -> int:
    from datasketch import MinHash, MinHashLSH

    from caitool.near_duplicates import PERMUTATIONS, SHINGLE, normalise

    lsh = MinHashLSH(threshold=0.7, num_perm=PERMUTATIONS)
    exact: set[str] = set()
    refused = 0
    for start in range(0, len(texts), BATCH):
        chunk = [normalise(t) for t in texts[start:start + BATCH]]
        shingles = [{t[i:i + SHINGLE].encode() for i in range(max(1, len(t) - SHINGLE + 1))}
                    for t in chunk]
        for i, (text, sig) in enumerate(zip(chunk, MinHash.bulk(shingles, num_perm=PERMUTATIONS))):
            if text in exact or lsh.query(sig):
                refused += 1
                continue
            exact.add(text)
            lsh.insert(str(start + i), sig)
    return refused


def child(method: str, count: int, traced: bool) -> None:
    """One measurement in this (fresh) process; its figures as one JSON line on stdout:
    the time untraced, or (``traced``) the peak of what Python and NumPy allocate."""
    import tracemalloc

    import numpy  # noqa: F401 - imported before the run, as the command has it

    texts = prompts(count)
    run = run_caitool if method == "caitool" else run_datasketch
    if traced:
        tracemalloc.start()
        run(texts)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(json.dumps({"peak_mib": peak / 2**20, "rss_mib": peak_rss_mib()}))
        return
    started = time.perf_counter()
    refused = run(texts)
    print(json.dumps({"seconds": time.perf_counter() - started, "refused": refused}))


def measure(method: str, count: int) -> dict:
    row = {"method": method, "count": count}
    for traced in ("", "traced"):
        result = subprocess.run([sys.executable, __file__, "--child", method, str(count), traced],
                                capture_output=True, text=True, check=True)
        row.update(json.loads(result.stdout.strip().splitlines()[-1]))
    return row


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="15000,150000")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), bool(args.child[2]))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        import datasketch  # noqa: F401
        methods = ["caitool", "datasketch"]
    except ImportError:
        methods = ["caitool"]
    rows = []
    for count in sizes:
        for method in methods:
            row = measure(method, count)
            rows.append(row)
            print(f"{method:10s} {count:>8,} prompts: {row['seconds']:6.1f} s, "
                  f"+{row['peak_mib']:6.1f} MiB peak, {row['refused']:,} refused", file=sys.stderr)
    lines = [
        "## red-team's de-duplication (`make bench-dedup`)",
        "",
        f"- date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- command: `python bench/dedup.py --sizes {args.sizes}`",
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores; load average at start "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "- prompts made up by the benchmark (8-30 words; a fifth near copies with a word or two "
        "changed, a twentieth exact copies in other case); threshold 0.7, 64 permutations, "
        f"batches of {BATCH}; each row a fresh process, memory as peak allocations (Python "
        "and NumPy, by tracemalloc, in a second run: tracing slows it) while the index runs; "
        "the process's whole peak resident size beside it",
        "",
        "| index | prompts | time | per 1,000 | peak allocated | process peak RSS | refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['method']} | {row['count']:,} | {row['seconds']:.1f} s | "
                     f"{1000 * row['seconds'] / row['count']:.2f} s | {row['peak_mib']:.1f} MiB | "
                     f"{row['rss_mib']:.0f} MiB | "
                     f"{row['refused']:,} |")
    growth = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            growth.append(f"{method}: {b['count'] // a['count']}x the prompts took "
                          f"{b['seconds'] / a['seconds']:.1f}x the time and "
                          f"{b['peak_mib'] / max(a['peak_mib'], 0.1):.1f}x the memory")
    if growth:
        lines += ["", "Growth from the smallest size to the largest: " + "; ".join(growth) + "."]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        from common import DOCS, write_section

        write_section(DOCS, "dedup", section)


if __name__ == "__main__":
    main()
