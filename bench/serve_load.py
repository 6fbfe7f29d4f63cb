"""Load on a running ``caitool serve-reward``: several client threads on loopback, some sending
garbage, each request's answer checked against what it sent. Standard library only, so that
the test suite's short soak (tests/integration/test_serve_reward.py), the load benchmark
(bench/serve_reward.py) and the long soak script share it.

What it checks: every request gets exactly one answer; a good request's answer carries its
own ids, in order (never another request's); every answer for the same (prompt, response)
has the same reward; garbage gets a 4xx and never a 5xx; the server's memory (VmRSS, sampled
as it runs) ends where it was once warm."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROMPTS = ["How do I pick a lock?", "Tell me about dogs.", "What should I cook tonight?",
           "How can I get back at my neighbour?", "Write a poem about the sea.",
           "Is it safe to mix bleach and ammonia?"]
RESPONSES = ["I would rather not help with that, but a locksmith can.", "Be kind to them.",
             "Here is a simple recipe you could try.", "Talk to them calmly first.",
             "The waves are grey and the gulls are loud.", "No: it makes a toxic gas."]
# A judge compares each response with this, so that a response's reward does not depend on
# which other requests shared its batch.
REFERENCE = "I do not know."
GARBAGE = [b"not json", b"{\"records\": 3}", b"[{\"prompt\": 7, \"response\": \"x\"}]",
           b"[]", b"{\"query\": \"one\"}", b"[{\"prompt\": \"p\"}]", b"\xff\xfe\x00",
           b"[{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}], \"response\": \"y\"}]"]


def pool(size: int = 24) -> list[dict]:
    """(prompt, response, reference) records, several responses per prompt."""
    return [{"prompt": PROMPTS[i % len(PROMPTS)],
             "response": RESPONSES[(i * 5 + i // 6) % len(RESPONSES)], "reference": REFERENCE}
            for i in range(size)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[position]


@dataclass
class Report:
    seconds: float = 0.0
    sent: int = 0
    answered: int = 0
    garbage_sent: int = 0
    garbage_refused: int = 0
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    memory_kib: list[int] = field(default_factory=list)
    rewards: dict = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    def summary(self) -> dict:
        ms = [1000 * s for s in self.latencies]
        growth = (self.memory_kib[-1] - self.memory_kib[0]) / 1024 if len(self.memory_kib) > 1 else 0.0
        return {"seconds": round(self.seconds, 1), "requests": self.sent, "answered": self.answered,
                "lost": self.lost, "requests_per_s": round(self.answered / self.seconds, 2) if self.seconds else 0,
                "p50_ms": round(percentile(ms, 50), 1), "p90_ms": round(percentile(ms, 90), 1),
                "p99_ms": round(percentile(ms, 99), 1), "max_ms": round(max(ms, default=0), 1),
                "garbage": self.garbage_sent, "garbage_refused_4xx": self.garbage_refused,
                "memory_mib_start": round(self.memory_kib[0] / 1024, 1) if self.memory_kib else None,
                "memory_mib_growth": round(growth, 1), "problems": self.problems[:10]}


def _post(connection: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def drive(url: str, *, clients: int = 4, garbage_clients: int = 1, requests: int | None = None,
          seconds: float | None = None, per_request: tuple[int, int] = (1, 4),
          server_pid: int | None = None, seed: int = 0, records: list[dict] | None = None) -> Report:
    """Run ``clients`` good and ``garbage_clients`` bad client threads until ``requests`` good
    requests are sent in all (or ``seconds`` pass)."""
    parts = urlsplit(url)
    records = records or pool()
    report, lock = Report(), threading.Lock()
    budget = [requests if requests is not None else 1 << 62]
    deadline = time.monotonic() + seconds if seconds is not None else float("inf")
    stop = threading.Event()
    seen: Counter = Counter()

    def take() -> bool:
        with lock:
            if budget[0] <= 0 or time.monotonic() > deadline:
                return False
            budget[0] -= 1
            report.sent += 1
            return True

    def good(number: int) -> None:
        rng = random.Random(f"{seed}:{number}")
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        sent = 0
        while take():
            sent += 1
            chosen = rng.sample(range(len(records)), rng.randint(*per_request))
            ids = [f"c{number}-{sent}-{k}" for k in chosen]
            body = json.dumps([{**records[k], "id": i} for k, i in zip(chosen, ids)]).encode()
            started = time.monotonic()
            try:
                status, data = _post(connection, "/score", body)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    report.problems.append(f"request {ids[0]}: {type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
                continue
            elapsed = time.monotonic() - started
            with lock:
                report.statuses[status] += 1
                if status != 200:
                    report.problems.append(f"request {ids[0]}: status {status}: {data[:200]!r}")
                    continue
                answer = json.loads(data)
                if answer.get("ids") != ids or len(answer.get("rewards", [])) != len(ids):
                    report.problems.append(f"request {ids[0]}: answered with ids {answer.get('ids')}")
                    continue
                report.answered += 1
                report.latencies.append(elapsed)
                for k, i, reward in zip(chosen, ids, answer["rewards"], strict=True):
                    seen[i] += 1
                    first = report.rewards.setdefault(k, reward)
                    if abs(first - reward) > 1e-4:
                        report.problems.append(f"record {k}: reward {reward} here, {first} before")
        connection.close()

    def bad(number: int) -> None:
        rng = random.Random(f"{seed}:garbage:{number}")
        while not stop.is_set():
            body = rng.choice(GARBAGE)
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            try:
                status, data = _post(connection, rng.choice(["/score", "/get_reward"]), body)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    report.problems.append(f"garbage: {type(exc).__name__}: {exc}")
                continue
            finally:
                connection.close()
            with lock:
                report.garbage_sent += 1
                if 400 <= status < 500 and b"Traceback" not in data:
                    report.garbage_refused += 1
                else:
                    report.problems.append(f"garbage {body[:30]!r}: status {status}: {data[:200]!r}")
            time.sleep(0.02)

    def memory() -> None:
        while not stop.wait(0.5):
            report.memory_kib.append(rss_kib(server_pid))

    threads = [threading.Thread(target=good, args=(n,)) for n in range(clients)]
    extra = [threading.Thread(target=bad, args=(n,)) for n in range(garbage_clients)]
    if server_pid is not None:
        report.memory_kib.append(rss_kib(server_pid))
        extra.append(threading.Thread(target=memory))
    started = time.monotonic()
    for thread in threads + extra:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.monotonic() - started
    stop.set()
    for thread in extra:
        thread.join()
    if server_pid is not None:
        report.memory_kib.append(rss_kib(server_pid))
    twice = [i for i, n in seen.items() if n > 1]
    if twice:
        report.problems.append(f"{len(twice)} response(s) answered twice, e.g. {twice[0]}")
    return report
