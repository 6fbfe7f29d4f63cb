"""Count what the hostile corpus of test_bad_input.py finds: cases, clean, traceback, hang,
lost, wrong, then each case that is not clean and why.

    python tests/integration/corpus_counts.py                  # the whole corpus
    python tests/integration/corpus_counts.py --only import-   # the cases whose id holds it
    python tests/integration/corpus_counts.py --src OTHER/src   # another tree's caitool

It runs the very table and judge the test runs (``cases()``, ``outcome()``), each case in its
own folder, ``--jobs`` at a time, so the counts before and after a change are comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import test_bad_input as corpus  # noqa: E402

CATEGORIES = ("clean", "traceback", "hang", "lost", "wrong")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="run the cases whose id holds this text (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter whose caitool runs the cases")
    parser.add_argument("--src", help="import caitool from this source folder instead (first on "
                                      "PYTHONPATH): another tree, the same interpreter")
    args = parser.parse_args()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [args.src, os.environ.get("PYTHONPATH")]))} \
        if args.src else None
    chosen = [c for c in corpus.cases() if not args.only or any(o in c.id for o in args.only)]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="corpus-") as scratch:
        root = Path(scratch)
        tiny = None
        if any(c.needs == "tiny" for c in chosen):
            from caitool.testing.tiny import build

            tiny = root / "tiny"
            build(tiny)

        def judge(numbered: tuple[int, corpus.Case]) -> tuple[str, str, list[str]]:
            number, case = numbered
            folder = root / f"case{number}"
            folder.mkdir()
            result = corpus.run(case, folder, args.python, tiny, env)
            category, problems = corpus.outcome(case, result)
            return case.id, category, problems

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(judge, enumerate(chosen)))
    counts = Counter(category for _, category, _ in results)
    print(f"cases {len(results)}: " + ", ".join(f"{name} {counts[name]}" for name in CATEGORIES)
          + f" ({time.monotonic() - started:.0f}s, {args.jobs} at a time)")
    for case_id, category, problems in results:
        if category != "clean":
            print(f"  {category}: {case_id}: {'; '.join(problems)[:300]}")
    return 0 if counts["clean"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
