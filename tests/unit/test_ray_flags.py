"""--ray's flags, refused before anything starts, and the parts of the Ray engine that need no
cluster: a replica's retry of a failed batch record by record, the replicas' CPU share,
shards on a file system named by URI. (On a real local cluster: tests/integration/test_ray.py.)"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from caitool.errors import CaitoolError
from caitool.io.jsonl import parse_lines
from caitool.io.stream import Batch, StepResult
from caitool.scaling import is_uri, storage
from caitool.scaling.cluster import RayOptions
from caitool.scaling.replica import BackendSpec, Broken, Replica, run_batch
from helpers import jsonl, run_cli

FAKE = ["--backend", "fake", "-m", "fake"]
ROWS = jsonl([{"id": f"r{i}", "prompt": f"Hi {i}"} for i in range(3)])


@pytest.mark.parametrize("flags, message", [
    (["--ray", "--replicas", "0"], "--replicas must be at least 1"),
    (["--ray-address", "auto"], "--ray-address needs --ray"),
    (["--replicas", "2"], "--replicas needs --ray"),
    (["--gpus-per-replica", "1"], "--gpus-per-replica needs --ray"),
    (["--ray", "--gpus-per-replica", "-1"], "--gpus-per-replica must be 0 or more"),
    (["--ray", "--gpus-per-replica", "1.5"], "above 1 must be a whole number"),
    (["--ray", "--cpus-per-replica", "0"], "--cpus-per-replica must be more than 0"),
    (["--ray", "--dry-run"], "--dry-run runs no model"),
    (["--ray", "--resume"], "--resume needs -o FILE"),
    (["--ray", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["-o", "s3://bucket/out"], "object storage is read and written with --ray"),
])
def test_bad_ray_flags_are_refused_in_one_line(flags, message):
    result = run_cli("generate", *FAKE, *flags, input=ROWS)
    assert result.returncode == 1
    assert message in result.stderr.decode()
    assert b"Traceback" not in result.stderr and result.stdout == b""


def test_backend_options_are_checked_before_ray_starts():
    result = run_cli("generate", *FAKE, "--ray", "--device", "cpu", input=ROWS)
    assert result.returncode == 1 and b"--device does not apply to the fake backend" in result.stderr


def test_help_and_plain_runs_never_import_ray():
    code = ("import sys; from caitool.cli import main\n"
            "for args in (['--help'], ['critique', '--help']):\n"
            "    try: main(args)\n"
            "    except SystemExit: pass\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert b"--ray-address" in result.stdout and b"--replicas" in result.stdout


def test_replicas_share_the_cpus_unless_told():
    assert RayOptions(replicas=2).cpus(2) == 1
    assert RayOptions(replicas=1).cpus(2) == 2
    assert RayOptions(replicas=3).cpus(2) == 0.5  # 0.67, in quarters, rounded down
    assert RayOptions(replicas=8).cpus(1) == 0.25
    assert RayOptions(replicas=4, gpus_per_replica=1).cpus(64) == 1
    assert RayOptions(address="auto", replicas=1).cpus(64) == 1  # a shared cluster
    assert RayOptions(cpus_per_replica=0.5).cpus(2) == 0.5


def test_a_failed_batch_is_retried_record_by_record_from_fresh_copies():
    batch = [{"id": f"r{i}", "prompt": "bad" if i == 1 else "good", "rounds": []} for i in range(3)]
    calls = []

    def step(records):
        calls.append([r["id"] for r in records])
        for record in records:
            record["rounds"].append("done")  # steps change their records in place
            if record["prompt"] == "bad":
                raise ValueError("prompt too long\nsecond line")
        return StepResult(records, {})

    result = run_batch(step, pickle.dumps(batch))
    assert calls == [["r0", "r1", "r2"], ["r0"], ["r1"], ["r2"]]
    assert [r["id"] for r in result.records] == ["r0", "r2"]
    assert all(r["rounds"] == ["done"] for r in result.records)
    assert result.failed == {"r1": "ValueError: prompt too long"}


def test_a_replica_whose_model_cannot_load_reports_it_once():
    replica = Replica(BackendSpec("hf", "/no/such/model"), lambda backend: None)
    broken = replica.run(pickle.dumps([{"id": "a"}]))
    assert isinstance(broken, Broken) and "/no/such/model" in broken.reason


def test_a_replica_runs_the_step_its_maker_builds_with_what_the_batch_says_is_written():
    spec = BackendSpec("fake", "fake")
    replica = Replica(spec, lambda backend: lambda batch: StepResult(
        [{**r, "by": backend.name, "written": sorted(batch.written)} for r in batch]))
    batch = Batch([{"id": "a"}])
    batch.written = frozenset({"a:0-2"})
    assert replica.run(pickle.dumps(batch)).records == [{"id": "a", "by": "fake", "written": ["a:0-2"]}]
    # What travels to the actors must pickle.
    pickle.loads(pickle.dumps(spec))


def test_shards_on_a_file_system_uri(tmp_path):
    uri = f"file://{tmp_path}/out"
    assert is_uri(uri) and not is_uri(str(tmp_path))
    with storage.ShardWriter(uri) as writer:
        failed = {}
        assert writer.write([{"id": "a"}, {"id": "b", "bad": float("nan")}], unwritable=failed) == 1
        assert list(failed) == ["b"] and failed["b"].startswith("cannot be written as JSON")
    shards = list((tmp_path / "out").iterdir())
    assert [p.suffix for p in shards] == [".jsonl"] and not shards[0].name.startswith(".")
    assert storage.done_ids_under(uri) == {"a"}
    with pytest.raises(CaitoolError, match="already holds JSONL shards; add --resume"):
        storage.ShardWriter(uri)
    with storage.ShardWriter(uri, append=True) as writer:
        writer.write([{"id": "c"}])
    assert storage.done_ids_under(uri) == {"a", "c"}


def test_lines_from_storage_are_checked_with_file_and_line():
    data = b'{"id": "a", "prompt": "x"}\n\n{"prompt": \n'
    lines = parse_lines(data.split(b"\n"), "s3://b/in.jsonl")
    assert next(lines)[0] == 1
    with pytest.raises(CaitoolError, match=r"s3://b/in.jsonl:3: invalid JSON"):
        next(lines)
