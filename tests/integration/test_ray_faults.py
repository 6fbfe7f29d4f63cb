"""Faults of a ``--ray`` run on a local Ray that its driver starts: SIGINT or SIGTERM of the
driver, SIGKILL of one replica. The run ends (or goes on without the replica), ``--resume``
then writes every record exactly once, and no process of the run is left behind.

The tests know nothing of how the executor is built: a process belongs to the run when it
inherited the driver's environment (a marker variable; Ray's processes on a local cluster
inherit it), and a replica is a Ray worker process of the run that is not idle."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from helpers import jsonl, records

pytest.importorskip("ray", reason="Ray Data is not installed: pip install 'caitool[ray]' "
                                  "(make install does it)")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.ray

MARK = "CAITOOL_FAULT_TEST_RUN"
ROWS = [{"id": f"f{i}", "prompt": f"Tell me about the number {i}."} for i in range(24)]

RAY_CORE_LOG = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] \w+\.cc:\d+: ")


def _processes_of(run: str) -> list:
    """The live processes that inherited the run's marker."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(MARK) == run:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _describe(processes: list) -> list[str]:
    out = []
    for process in processes:
        try:
            out.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
        except psutil.Error:
            continue
    return out


def _left_behind(run: str, grace: float = 30.0) -> list[str]:
    """What of the run is still alive once ``grace`` seconds have passed (Ray's processes
    stop a moment after their driver)."""
    deadline = time.monotonic() + grace
    while True:
        alive = _processes_of(run)
        if not alive or time.monotonic() > deadline:
            return _describe(alive)
        time.sleep(0.5)


def _replicas(run: str) -> list:
    busy = []
    for process in _processes_of(run):
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if title.startswith("ray::") and not title.startswith("ray::IDLE"):
            busy.append(process)
    return busy


def _start(tmp_path, tiny_model, run: str) -> tuple[subprocess.Popen, list[str]]:
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(ROWS))
    args = ["generate", "-m", str(tiny_model), "--max-new-tokens", "32", "--batch-size", "1",
            "--seed", "3", "-o", str(tmp_path / "out.jsonl"), str(source)]
    # One torch thread a replica: the two of them and the driver share the machine's cores.
    env = {**os.environ, MARK: run, "CAITOOL_QUIET": "1", "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "caitool", *args, "--ray", "--replicas", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return driver, args


def _wait_for_lines(driver: subprocess.Popen, out, count: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} records written while the driver ran "
                         f"(exit {driver.poll()}): {driver.stderr.read().decode()[-2000:]}")


def _resume_writes_each_record_once(args: list[str], out) -> None:
    # Resumed without Ray: what is being checked is what the Ray run left in the file.
    result = subprocess.run([sys.executable, "-m", "caitool", *args, "--resume"],
                            capture_output=True, env={**os.environ, "CAITOOL_QUIET": "0"}, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    ids = [r["id"] for r in records(out.read_bytes())]
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice, f"written twice: {twice}"
    assert sorted(ids) == sorted(r["id"] for r in ROWS)


@pytest.mark.parametrize("sig, code", [
    pytest.param(signal.SIGINT, 130, id="sigint"),
    pytest.param(signal.SIGTERM, 143, id="sigterm"),
])
def test_a_signalled_driver_stops_its_ray_and_resumes_exactly_once(tmp_path, tiny_model, sig, code):
    run = uuid.uuid4().hex
    driver, args = _start(tmp_path, tiny_model, run)
    out = tmp_path / "out.jsonl"
    try:
        _wait_for_lines(driver, out, 2)
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    text = err.decode()
    written = records(out.read_bytes())  # whole lines only: this raises on a torn one
    assert 2 <= len(written) < len(ROWS), "the driver should have been stopped part-way"
    assert _left_behind(run) == []
    _resume_writes_each_record_once(args, out)
    assert driver.returncode == code, text[-2000:]
    # Ray's core (C++) may log its own line as its workers go ("[date E pid tid]
    # task_manager.cc: Failed to push error to driver"); caitool's own stderr is one line.
    own = [line for line in text.strip().splitlines() if not RAY_CORE_LOG.match(line)]
    assert "Traceback" not in text and len(own) == 1, text[-2000:]


def test_a_killed_replica_loses_no_record_and_leaves_nothing(tmp_path, tiny_model):
    run = uuid.uuid4().hex
    driver, args = _start(tmp_path, tiny_model, run)
    out = tmp_path / "out.jsonl"
    try:
        _wait_for_lines(driver, out, 2)
        replicas = _replicas(run)
        assert replicas, f"no replica among {_describe(_processes_of(run))}"
        replicas[0].send_signal(signal.SIGKILL)
        _, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    text = err.decode()
    records(out.read_bytes())  # whole lines only
    assert _left_behind(run) == []
    _resume_writes_each_record_once(args, out)
    # Either the run went on without it (exit 0) or it ended in one line naming the way on.
    assert "Traceback" not in text, text[-2000:]
    if driver.returncode != 0:
        assert driver.returncode == 1 and len(text.strip().splitlines()) == 1, text[-2000:]
