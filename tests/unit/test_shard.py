"""--shard I/N: N shards of the same input, rejoined, hold every record exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from caitool.errors import CaitoolError
from caitool.io import stream
from helpers import jsonl, records, run_cli


def _inputs(count: int) -> list[dict]:
    # Half with ids, half without (they get one from their prompt), and a duplicate prompt.
    rows = []
    for i in range(count):
        row = {"prompt": f"question number {i}"}
        if i % 2:
            row["id"] = f"q{i}" if i % 3 else i
        rows.append(row)
    rows.append({"prompt": "question number 0", "id": "dup-of-0"})
    return rows


def _run(source, output, shard=None) -> list[str]:
    stream.run("test", str(source), stream.StepResult, output=str(output), shard=shard,
               describe="copying")
    return [str(r["id"]) for r in records(output.read_bytes())]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_rejoin_to_the_unsharded_ids_each_once(tmp_path, count):
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(_inputs(60)))
    whole = _run(source, tmp_path / "whole.jsonl")
    parts = [_run(source, tmp_path / f"part{i}.jsonl", f"{i}/{count}")
             for i in range(1, count + 1)]
    joined = [record_id for part in parts for record_id in part]
    assert len(whole) == 61
    assert Counter(joined) == Counter(whole)
    assert len(set(joined)) == len(joined)
    if count > 1:
        # Each record is kept by exactly one shard and the split is not degenerate.
        assert all(parts), [len(p) for p in parts]


def test_shards_do_not_depend_on_line_order(tmp_path):
    rows = _inputs(40)
    forward, backward = tmp_path / "f.jsonl", tmp_path / "b.jsonl"
    forward.write_text(jsonl(rows))
    backward.write_text(jsonl(rows[::-1]))
    assert (sorted(_run(forward, tmp_path / "f2.jsonl", "2/3"))
            == sorted(_run(backward, tmp_path / "b2.jsonl", "2/3")))


@pytest.mark.parametrize("spec", ["0/2", "3/2", "1/0", "2", "a/b", "1/2/3", "", "-1/2"])
def test_bad_shard_specs_are_one_line_errors(spec):
    with pytest.raises(CaitoolError, match="--shard"):
        stream.parse_shard(spec)


def test_parse_shard():
    assert stream.parse_shard(None) is None
    assert stream.parse_shard("1/1") == (1, 1)
    assert stream.parse_shard("8/8") == (8, 8)


def test_cli_rejects_a_bad_shard_before_loading_anything():
    result = run_cli("generate", "-m", "no-such-model", "--shard", "3/2",
                     input=jsonl([{"prompt": "hi"}]))
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "caitool generate: --shard 3/2: need 1 <= I <= N"
    assert result.stdout == b""
