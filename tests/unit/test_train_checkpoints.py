"""Which checkpoint a resumed run goes on from, and what happens to the metrics file and
the checkpoints that a kill cut off. The real kill -9 runs are in test_train_sft.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from caitool.errors import CaitoolError
from caitool.training import checkpoints


def checkpoint(root: Path, step: int, marker: bool = True, state: str | None = "{}") -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_text("weights")
    if state is not None:
        (path / checkpoints.STATE).write_text(state)
    if marker:
        (path / checkpoints.MARKER).write_text(checkpoints.marker(step, 100 * step))
    return path


def flags(tmp_path: Path, **values) -> SimpleNamespace:
    return SimpleNamespace(**{"resume": True, "resume_from": None, "metrics": "-",
                              "output": str(tmp_path), **values})


def test_the_newest_marked_checkpoint_wins_and_unmarked_newer_ones_are_cut_off(tmp_path):
    checkpoint(tmp_path, 2)
    four = checkpoint(tmp_path, 4)
    six = checkpoint(tmp_path, 6, marker=False)  # trainer_state.json written, marker not yet
    eight = checkpoint(tmp_path, 8, marker=False, state=None)
    (tmp_path / "checkpoint-10").write_text("not a directory")
    found, skipped = checkpoints.newest(tmp_path)
    assert found == four
    assert skipped == [(eight, "its save did not finish"), (six, "its save did not finish")]


def test_checkpoints_without_any_marker_are_judged_by_their_trainer_state(tmp_path):
    two = checkpoint(tmp_path, 2, marker=False, state=json.dumps({"global_step": 2}))
    checkpoint(tmp_path, 4, marker=False, state='{"global_step": 4, "log_hi')  # torn
    found, skipped = checkpoints.newest(tmp_path)
    assert found == two and checkpoints.step(two) == 2
    assert skipped[0][1] == "no complete trainer_state.json: its save did not finish"


def test_resume_removes_the_cut_off_ones_and_trims_the_metrics(tmp_path, capsys):
    checkpoint(tmp_path, 2)
    cut = checkpoint(tmp_path, 4, marker=False, state=None)
    log = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "by_file": {}}, {"step": 1, "loss": 3}, {"step": 2, "loss": 2},
             {"step": 3, "loss": 1}, {"note": "no step"}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"step": 4, "lo')
    chosen = checkpoints.resume("train-sft", flags(tmp_path, metrics=str(log)), tmp_path)
    assert chosen == str(tmp_path / "checkpoint-2") and not cut.exists()
    kept = [json.loads(line) for line in log.read_text().splitlines()]
    assert kept == [lines[0], lines[1], lines[2], lines[4]]
    err = capsys.readouterr().err
    assert f"removed {cut}: its save did not finish" in err
    assert f"resuming from {tmp_path / 'checkpoint-2'} (step 2)" in err
    assert "dropped 2 line(s) logged after step 2" in err
    before = log.read_bytes()
    assert checkpoints.trim_metrics(str(log), 2) == 0 and log.read_bytes() == before


def test_nothing_to_resume_from_is_one_line(tmp_path):
    with pytest.raises(CaitoolError, match=r"--resume: no complete checkpoint in .* to resume from$"):
        checkpoints.resume("train-sft", flags(tmp_path), tmp_path / "checkpoints")
    checkpoint(tmp_path, 2, marker=False, state=None)
    with pytest.raises(CaitoolError, match=r"to resume from \(1 cut off during their save\)"):
        checkpoints.resume("train-sft", flags(tmp_path), tmp_path)
    assert (tmp_path / "checkpoint-2").is_dir()  # nothing is removed when nothing resumes
    with pytest.raises(CaitoolError, match="not a complete checkpoint .no complete trainer_state"):
        checkpoints.resume("train-sft", flags(tmp_path, resume_from=str(tmp_path / "checkpoint-2")),
                           tmp_path)
    assert checkpoints.resume("train-sft", flags(tmp_path, resume=False), tmp_path) is None


def test_a_resumed_trainer_counts_tokens_on_from_its_checkpoint(tmp_path):
    trainer = SimpleNamespace(_total_train_tokens=0)
    checkpoints.restore(trainer, str(checkpoint(tmp_path, 3)))
    assert trainer._total_train_tokens == 300
    untouched = SimpleNamespace()
    checkpoints.restore(untouched, str(tmp_path / "checkpoint-3"))
    assert not hasattr(untouched, "_total_train_tokens")
