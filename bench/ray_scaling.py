"""``caitool critique`` plain against ``--ray --replicas 1`` and ``--ray --replicas 2``.

On the benchmark model (bench/common.py: Llama architecture, ~25M parameters), each setting
runs as a user runs it, a real ``caitool critique`` process, twice: on one record (what the
run costs before and after its records: interpreter, Ray, actors, model loading) and on
``--records`` records. Records/s is the difference: (N - 1) records over the extra seconds.
Ray's own start-up (``ray.init`` of a local cluster, then ``ray.shutdown``) is timed alone.
Prints a table; on a machine with few cores expect no gain from more replicas, only the
overhead.

    python bench/ray_scaling.py                 # 48 records, a few minutes on 2 CPU cores
    python bench/ray_scaling.py --records 16    # quicker
    python bench/ray_scaling.py --device cuda   # with a GPU: hf backend, one GPU per replica
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, build_bench_model, choose_threads, loadavg, log, write_records  # noqa: E402

SETTINGS = {
    "plain": [],
    "--ray --replicas 1": ["--ray", "--replicas", "1"],
    "--ray --replicas 2": ["--ray", "--replicas", "2"],
}


def run(model: Path, source: Path, out: Path, extra: list[str], args) -> tuple[float, float]:
    """(wall seconds, the seconds the command reports for its records) of one critique."""
    command = [sys.executable, "-m", "caitool", "critique", "-m", str(model),
               "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
               "--seed", "0", "--device", args.device, *extra, "-o", str(out), str(source)]
    # Every process, plain or replica, gets the same torch threads (Ray would give each
    # replica as many as whole CPUs it holds): what differs is Ray and the replica count.
    env = {**os.environ, "CAITOOL_QUIET": "0", "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr.decode()}")
    found = re.search(rb"records written in ([0-9.]+)s", result.stderr)
    return wall, float(found.group(1)) if found else float("nan")


def ray_start_up() -> float:
    """Seconds for ``ray.init`` of a local cluster and ``ray.shutdown``, in a fresh process."""
    code = ("import logging, time; t = time.perf_counter(); import ray; "
            "ray.init(include_dashboard=False, logging_level=logging.ERROR); ray.shutdown(); "
            "print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return float(result.stdout.decode().split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=48, help="records in the timed run")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="critique length")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="records per batch (small, so that two replicas both get work)")
    parser.add_argument("--device", default="cpu", help="the hf backend's --device (cpu or cuda)")
    parser.add_argument("--threads", default="auto",
                        help="torch threads per process: a number, or auto (torch's default, or 1 "
                             "when the machine is already half loaded: oversubscribed threads spin)")
    parser.add_argument("--workdir", help="keep the model and files here (default: a temp dir)")
    args = parser.parse_args()
    args.threads = choose_threads(args.threads)
    if args.device.startswith("cuda"):
        SETTINGS["--ray --replicas 1"] += ["--gpus-per-replica", "1"]
        SETTINGS.pop("--ray --replicas 2")  # one GPU lent: two replicas would wait on it
    with tempfile.TemporaryDirectory(prefix="caitool-ray-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        log("building the benchmark model")
        model = build_bench_model(work)
        one = write_records(work / "one.jsonl", 1)
        many = write_records(work / "many.jsonl", args.records)
        log(f"load {loadavg()}; timing Ray's start-up")
        start_up = ray_start_up()
        rows = []
        for name, extra in SETTINGS.items():
            log(f"critique {name}: 1 record, then {args.records}")
            fixed, _ = run(model, one, work / "out1.jsonl", extra, args)
            wall, reported = run(model, many, work / "out.jsonl", extra, args)
            rate = (args.records - 1) / max(wall - fixed, 1e-9)
            rows.append((name, fixed, wall, reported, rate))
    base = rows[0][4]
    print(f"caitool critique, {args.records} records, --max-new-tokens {args.max_new_tokens}, "
          f"--batch-size {args.batch_size}, device {args.device}, {os.cpu_count()} cores, "
          f"{args.threads} torch thread(s) per process, load at end {loadavg()}")
    print(f"Ray start-up alone (local ray.init + ray.shutdown): {start_up:.1f} s\n")
    print("| setting | 1 record, s | all records, s | reported, s | records/s | vs plain |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, fixed, wall, reported, rate in rows:
        print(f"| {name} | {fixed:.1f} | {wall:.1f} | {reported:.1f} | {rate:.2f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
