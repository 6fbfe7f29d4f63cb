"""``caitool serve-reward`` under load on loopback: requests/s and latency percentiles, and the
long soak.

Starts the server (a subprocess, on the CPU) on a random-weight reward model (the tests' tiny
one, whose forward pass is cheap enough that the figures are the server's own cost; or with
``--model bench`` the benchmarks' 25M-parameter Llama shape) and drives it
with bench/serve_load.py's clients: each request 1 to 4 (prompt, response) records, every
answer checked (its own ids, the same reward for the same record, none lost, none twice).

    python bench/serve_reward.py                 # `make bench-serve`: three runs of 400 requests
                                                 # each in 4 rounds; writes docs/benchmarks.md
    python bench/serve_reward.py --soak 600      # the long soak: 10 minutes, 8 clients and 2
                                                 # sending garbage; exits 1 on any problem
    python bench/serve_reward.py --model bench   # the 25M-parameter model: the model's cost too

The runs: one client (each request alone: the latency floor), 8 concurrent clients with the
server's batching (--max-batch 64, --max-wait-ms 10), and 8 clients with --max-batch 1 (no
batching), so the table shows what batching buys. Two servers (batched and not) run at once
and the runs alternate in --rounds rounds, so that other work on the machine weighs on each
about alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402
from common import DOCS, MODEL_SHAPE, ROOT, log, write_section  # noqa: E402

SECTION = "serve-reward"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, model: Path, log_path: Path, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "caitool", "serve-reward", "-r", str(model), "--device",
                   "cpu", "--port", str(self.port), *flags]
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out,
                                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "",
                                                 "CAITOOL_QUIET": "0"})
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"serve-reward exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("serve-reward did not come up") from None
                time.sleep(0.3)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def build_model(work: Path, kind: str) -> Path:
    from caitool.testing.tiny import build

    if kind == "tiny":
        return build(work / "tiny-rm", seq_cls=True)
    return build(work / "bench-rm", seq_cls=True, **MODEL_SHAPE)


def finish(server: Server, name: str, flags: list[str], report) -> dict:
    code = server.stop()
    summary = report.summary()
    if code != 0:
        report.problems.append(f"the server exited {code} after SIGTERM")
    if "Traceback" in server.log_path.read_text():
        report.problems.append("a traceback in the server's log")
    summary.update(name=name, flags=" ".join(flags), exit=code, problems=report.problems[:10])
    log(f"{name}: {json.dumps(summary)}")
    return summary


def merge(reports: list) -> serve_load.Report:
    whole = serve_load.Report()
    for report in reports:
        whole.seconds += report.seconds
        whole.sent += report.sent
        whole.answered += report.answered
        whole.latencies += report.latencies
        whole.problems += report.problems
        whole.memory_kib += report.memory_kib
    return whole


def load_runs(model: Path, work: Path, args) -> list[dict]:
    """The three runs, in alternating rounds on two servers started together, so that other
    work on the machine weighs on each about alike."""
    configs = [("1 client", [], 1, "batched"), (f"{args.clients} clients, batched", [], args.clients,
                                                "batched"),
               (f"{args.clients} clients, --max-batch 1", ["--max-batch", "1"], args.clients,
                "single")]
    servers = {"batched": Server(model, work / "batched.log"),
               "single": Server(model, work / "single.log", "--max-batch", "1")}
    for server in servers.values():
        serve_load.drive(server.url, clients=2, garbage_clients=0, requests=20)  # warm
    reports: dict[str, list] = {name: [] for name, *_ in configs}
    for round_ in range(args.rounds):
        for name, _, clients, which in configs:
            server = servers[which]
            reports[name].append(serve_load.drive(
                server.url, clients=clients, garbage_clients=0, server_pid=server.process.pid,
                requests=args.requests // args.rounds, seed=round_))
            log(f"round {round_ + 1}, {name}: {json.dumps(reports[name][-1].summary())}")
    troubles: dict[str, list[str]] = {}
    for which, server in servers.items():
        code = server.stop()
        troubles[which] = [f"the server exited {code} after SIGTERM"] if code else []
        if "Traceback" in server.log_path.read_text():
            troubles[which].append("a traceback in the server's log")
    rows = []
    for name, flags, _, which in configs:
        report = merge(reports[name])
        report.problems += troubles[which]
        rows.append(report.summary() | {"name": name, "flags": " ".join(flags)})
        log(f"{name}: {json.dumps(rows[-1])}")
    return rows


def run(model: Path, work: Path, name: str, flags: list[str], **drive) -> dict:
    log(f"{name}: starting the server ({' '.join(flags) or 'defaults'})")
    server = Server(model, work / f"{name}.log", *flags)
    serve_load.drive(server.url, clients=2, garbage_clients=0, requests=20)  # warm
    return finish(server, name, flags, serve_load.drive(server.url, server_pid=server.process.pid,
                                                          **drive))


def section(args, rows: list[dict], started: str) -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    shape = ("the tiny reward model (2 layers, hidden 64)" if args.model == "tiny"
             else "the 25M-parameter benchmark model as a reward model")
    lines = ["## serve-reward under load (`make bench-serve`)", "",
             f"- date: {started}", f"- command: `python bench/serve_reward.py "
             f"{'--model bench ' if args.model == 'bench' else ''}--requests {args.requests}`",
             f"- CPU: {cpu}, {os.cpu_count()} logical cores (shared with other work; load "
             f"average at start {args.load})",
             f"- server: `caitool serve-reward -r MODEL --device cpu` on loopback, {shape}",
             f"- clients: bench/serve_load.py, {args.requests} requests per run of 1 to 4 "
             "records each, every answer checked", "",
             "| run | requests/s | p50 | p90 | p99 | lost | memory growth |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['requests_per_s']:.1f} | {row['p50_ms']:.0f} ms | "
                     f"{row['p90_ms']:.0f} ms | {row['p99_ms']:.0f} ms | {row['lost']} | "
                     f"{row['memory_mib_growth']:+.1f} MiB |")
    lines += ["", "Memory growth: the server's resident size at the end of a run less at its "
              "start (after 20 warm-up requests). The long soak, `python bench/serve_reward.py "
              "--soak 600`, runs 8 clients and 2 sending garbage for ten minutes and exits 1 on "
              "a lost, doubled or wrong answer, a 5xx, or memory that grows by more than "
              "`--max-growth-mib` (64)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating rounds the requests of each run are split into")
    parser.add_argument("--model", choices=("tiny", "bench"), default="tiny")
    parser.add_argument("--soak", type=float, default=None, metavar="SECONDS",
                        help="the long soak instead of the load runs")
    parser.add_argument("--garbage-clients", type=int, default=2)
    parser.add_argument("--max-growth-mib", type=float, default=64.0)
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    args.load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_model(work, args.model)
        if args.soak is not None:
            summary = run(model, work, "soak", [], clients=args.clients,
                          garbage_clients=args.garbage_clients, seconds=args.soak)
            print(json.dumps(summary, indent=2))
            bad = summary["problems"] or summary["lost"] \
                or summary["memory_mib_growth"] > args.max_growth_mib
            return 1 if bad else 0
        rows = load_runs(model, work, args)
    print(json.dumps(rows, indent=2))
    if not args.no_write:
        write_section(DOCS, SECTION, section(args, rows, started))
        log(f"wrote {DOCS.relative_to(ROOT)}")
    return 1 if any(row["problems"] or row["lost"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
