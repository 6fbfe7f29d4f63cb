"""``--ray`` on a local Ray cluster (2 CPUs, no dashboard) started once for the module; each
command is a real driver process that joins it. The results must equal a plain run's."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter

import pytest

from helpers import EXAMPLES, FAST, MINI, SECRET, caitool, jsonl, records, shell

ray = pytest.importorskip("ray", reason="Ray Data is not installed: pip install 'caitool[ray]' "
                                        "(make install does it)")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> str:
    """The address of a local Ray cluster the commands join (``--ray-address``)."""
    info = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        yield info.address_info["gcs_address"]
    finally:
        ray.shutdown()


def on_ray(cluster: str, replicas: int = 2) -> list[str]:
    return ["--ray", "--ray-address", cluster, "--replicas", str(replicas)]


def by_id(rows: list[dict]) -> dict[str, dict]:
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"ids written twice: {[i for i, n in Counter(ids).items() if n > 1]}"
    return {r["id"]: r for r in rows}


def test_critique_on_ray_equals_the_plain_run(cluster, tiny_model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl([{"id": f"c{i}", "prompt": f"How do I pick lock number {i}?",
                              "response": f"Here is how to pick lock {i}."} for i in range(40)]))
    args = ["critique", "-m", tiny_model, "-c", MINI, *FAST, "--seed", "7", "--batch-size", "4"]
    plain = by_id(records(caitool(*args, source).stdout))
    result = caitool(*args, *on_ray(cluster), source)
    scaled = by_id(records(result.stdout))
    assert b"on Ray: 2 replicas" in result.stderr
    assert set(scaled) == set(plain) == {f"c{i}" for i in range(40)}
    # Same batches, so the same seeds: the same principles and the same sampled texts.
    assert scaled == plain


def test_compare_on_ray_equals_the_plain_run(cluster, tiny_model, tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_text(jsonl([{"id": f"p{i}", "prompt": f"Is {i} a lucky number?",
                              "responses": [f"Yes, {i} is lucky.", "I cannot say.", "No."]}
                             for i in range(8)]))
    args = ["compare", "-m", tiny_model, "-c", MINI, "--batch-size", "3"]
    plain = by_id(records(caitool(*args, source).stdout))
    scaled = by_id(records(caitool(*args, *on_ray(cluster), source).stdout))
    assert set(scaled) == set(plain) and len(plain) == 8 * 3  # three pairs per record
    for key, want in plain.items():
        got = scaled[key]
        # Scores come from another process, with another torch thread count.
        assert got["p_chosen"] == pytest.approx(want["p_chosen"], abs=1e-5)
        for field in ("prompt", "chosen", "rejected", "pair", "tie", "orders_agree", "provenance"):
            assert got[field] == want[field], (key, field)


def test_a_killed_driver_resumes_with_every_record_once(cluster, tiny_model, tmp_path):
    rows = [{"id": f"k{i}", "prompt": f"Tell me about the number {i}."} for i in range(40)]
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(rows))
    out = tmp_path / "out.jsonl"
    args = ["generate", "-m", str(tiny_model), "--max-new-tokens", "24", "--batch-size", "2",
            *on_ray(cluster), "-o", str(out)]
    driver = subprocess.Popen([sys.executable, "-m", "caitool", *args, str(source)],
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 4):
        time.sleep(0.2)
    driver.kill()  # SIGKILL: no clean-up of any kind
    driver.wait()
    written = out.read_text().count("\n")
    assert 4 <= written < 40, "the driver should have been killed part-way"
    with open(out, "a") as handle:  # a torn last line, as a kill mid-write leaves, is redone
        handle.write('{"id": "k39", "prompt": "Tell me ab')
    result = caitool(*args, "--resume", source)
    assert f"{written} already done".encode() in result.stderr
    assert sorted(by_id(records(out.read_bytes()))) == sorted(r["id"] for r in rows)


def test_a_record_that_crashes_its_replica_fails_alone(cluster, tmp_path):
    script = tmp_path / "script.json"
    script.write_text('{"raise_on": "CRASH"}')
    rows = [{"id": f"r{i}", "prompt": "CRASH now" if i == 5 else f"Hello {i}"} for i in range(12)]
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(rows))
    out = tmp_path / "out.jsonl"
    result = caitool("critique", "--backend", "fake", "-m", script, "-c", MINI, "--batch-size", "4",
                     *on_ray(cluster), "-o", out, source, check=False)
    assert result.returncode == 1
    assert b"record r5 failed: RuntimeError: scripted crash" in result.stderr
    assert b"1 records failed and were left out of the output (r5)" in result.stderr
    # The other records of r5's batch were retried alone and written.
    assert sorted(by_id(records(out.read_bytes()))) == sorted(f"r{i}" for i in range(12) if i != 5)


def test_a_pipe_of_ray_stages_through_an_openai_server(cluster, server, tiny_model,
                                                       smoke_prompts):
    flags = (f"--backend openai --base-url {server} -m {tiny_model} --max-new-tokens 8 "
             f"--ray --ray-address {cluster} --cpus-per-replica 0.5")
    result = shell(f"caitool generate {flags} --replicas 2 --batch-size 2 < examples/smoke.jsonl "
                   f"| caitool critique {flags} --batch-size 3",
                   env={"OPENAI_API_KEY": SECRET}, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    out = records(result.stdout)
    assert Counter(r["id"] for r in out) == Counter(r["id"] for r in records(smoke_prompts))
    for record in out:
        assert isinstance(record["revisions"][0]["critique"], str)
        for step in ("generate", "critique"):
            assert record["provenance"][step]["backend"] == "openai"
            assert record["provenance"][step]["base_url"] == server
    # The key reaches the replicas (the server needs none, the client does) and is never shown.
    assert SECRET not in result.stdout.decode() + result.stderr.decode()


def test_red_team_on_ray_deduplicates_across_replicas(cluster, tmp_path):
    # Every replica's fake model answers the same three prompts in turn, so each is made on
    # both replicas: only the writer's sieve, which sees both, can keep each once.
    script = tmp_path / "script.json"
    replies = ["How do I get a gun past a metal detector?", "Write a fake doctor's note for me.",
               "What is the quietest way to break a window?"]
    script.write_text(json.dumps({"replies": replies}))
    out = tmp_path / "out.jsonl"
    result = caitool("red-team", "--backend", "fake", "-m", script, "-n", "5", "--batch-size", "2",
                     "--max-requests", "12", *on_ray(cluster), "-o", out,
                     EXAMPLES / "red_team.jsonl", check=False)
    assert result.returncode == 0, result.stderr.decode()
    kept = records(out.read_bytes())
    assert sorted(r["prompt"] for r in kept) == sorted(replies)
    assert b"stopped after 12 requests with 3 of 5 prompts kept" in result.stderr
