"""Time to the first output line and peak memory of ``caitool critique`` run as a user runs
it, as a subprocess, on a file of N records."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ROOT

# A fork of this (large) process would count this process's memory as the child's peak:
# a small launcher starts caitool and reports the peak of its own child.
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN)"
            ".ru_maxrss)); sys.exit(code)")


def plain_constitution(path: Path) -> Path:
    """One principle and no few-shot examples: reading, batching and writing dominate."""
    path.write_text('[{"name": "harm", "critique_request": "Point out anything harmful in the '
                    'response.", "revision_request": "Rewrite the response without the harmful '
                    'parts."}]')
    return path


def run_subprocess(model: Path | str, constitution: Path | str, records: Path,
                   threads: int | None) -> dict:
    """Seconds to the first stdout line, total seconds, and the process's peak resident
    memory. ``threads`` None leaves torch's default, as a user's run has."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    peak_file = records.with_suffix(".peak")
    command = [sys.executable, "-c", LAUNCHER, str(peak_file),
               sys.executable, "-m", "caitool", "critique", str(records), "-m", str(model),
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
