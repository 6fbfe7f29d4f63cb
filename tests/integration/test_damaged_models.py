"""A damaged or pickle-only model directory is refused in one line, by the commands that
load models and by the trainers, before any weights are read; no pickle is ever run."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest

from helpers import caitool, jsonl


class _Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['CAITOOL_TEST_MARK']}",))


def _pickle_only(directory, hostile: bool) -> None:
    import torch
    from safetensors.torch import load_file

    weights = directory / "model.safetensors"
    if hostile:
        (directory / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Hostile()}))
    else:
        torch.save(load_file(weights), directory / "pytorch_model.bin")
    weights.unlink()


def _damage(directory, kind: str) -> None:
    config = directory / "config.json"
    if kind == "config-syntax":
        config.write_text('{"model_type": "llama", ')
    elif kind == "config-types":
        config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_size": "big"}))
    elif kind == "cut-weights":
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        _pickle_only(directory, hostile=kind == "hostile-pickle")


DAMAGES = {
    "config-syntax": "config.json is not valid JSON",
    "config-types": "config.json: Validation error for field 'hidden_size'",
    "cut-weights": "model.safetensors is damaged",
    "pickle-only": "holds its weights only as pytorch_model.bin, which caitool does not load",
    "hostile-pickle": "holds its weights only as pytorch_model.bin, which caitool does not load",
}


@pytest.mark.parametrize("command, kind", [
    *(("generate", kind) for kind in DAMAGES),
    ("train-sft", "config-types"), ("train-sft", "cut-weights"), ("train-sft", "hostile-pickle"),
])
def test_a_damaged_model_is_one_line(tmp_path, tiny_model, monkeypatch, command, kind):
    mark = tmp_path / "pickle-ran"
    monkeypatch.setenv("CAITOOL_TEST_MARK", str(mark))
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    _damage(model, kind)
    if command == "generate":
        result = caitool("generate", "-m", model, "--max-new-tokens", "2",
                         input=jsonl([{"prompt": "hi"}]), check=False)
    else:
        data = tmp_path / "d.jsonl"
        data.write_text(jsonl([{"prompt": "hi", "response": "yo"}]))
        result = caitool("train-sft", data, "-m", model, "-o", tmp_path / "out", "--max-steps", "1",
                         check=False)
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"caitool {command}: model '{model}'") and DAMAGES[kind] in err, err
    assert result.stdout == b"" and not mark.exists()
