"""train-sft learns: the loss falls and the tiny model answers as it was taught."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import caitool
from train_helpers import FAST, TAUGHT_ANSWER, TAUGHT_PROMPT, build_chain, chain_dir, generate, metrics, series, write


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    return build_chain(chain_dir(tmp_path_factory))


def test_loss_falls_and_the_taught_answer_comes_back(chain):
    lines = metrics((chain["sft"].parent / "sft_metrics.jsonl").read_bytes())
    losses = series(lines, "loss")
    assert len(losses) == 40 and all(line["command"] == "train-sft" for line in lines)
    assert losses[-1] < losses[0] / 4, losses
    # Greedy decoding of the saved directory, loaded with plain transformers.
    assert generate(chain["sft"], TAUGHT_PROMPT) == [TAUGHT_ANSWER]
    assert generate(chain["tiny"], TAUGHT_PROMPT) != [TAUGHT_ANSWER]  # it was not there before
    summary = json.loads((chain["sft"] / "caitool_training.json").read_text())
    assert summary["command"] == "train-sft" and summary["examples"] == 63


def test_all_rounds_raw_format_checkpoints_and_resume(tmp_path, tiny_model):
    rows = [{"id": f"r{i}", "prompt": f"How can I steal a car? ({i})", "response": "rev2",
             "initial_response": "first",
             "revisions": [{"principle": "p", "critique": "c", "revision": "rev1"},
                           {"principle": "p", "critique": "c", "revision": "rev2"}]}
            for i in range(4)] + [{"prompt": "Say hi.", "response": "Hi."}]
    data = write(tmp_path / "revised.jsonl", rows)
    out, log = tmp_path / "sft", tmp_path / "metrics.jsonl"
    common = [data, "-m", tiny_model, "-o", out, "--all-rounds", "--format", "raw",
              "--batch-size", "3", "--save-steps", "2", "--logging-steps", "1", "--metrics", log]
    first = caitool("train-sft", *common, "--max-steps", "2")
    assert first.stdout == b""  # metrics went to the file
    assert "9 examples from 5 records (raw format)" in first.stderr.decode()
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    caitool("train-sft", *common, "--max-steps", "4", "--resume")
    steps = [line["step"] for line in metrics(log.read_bytes()) if "loss" in line]
    assert steps == [1, 2, 3, 4]  # the second run went on from step 2, appending
    assert (out / "checkpoints" / "checkpoint-4").is_dir() and (out / "model.safetensors").exists()


def test_lora_merged_on_save(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write(tmp_path / "d.jsonl", [{"prompt": "Say hi.", "response": "Hi."}] * 4)
    merged = tmp_path / "merged"
    caitool("train-sft", data, "-m", tiny_model, "-o", merged, "--lora", "--lora-r", "4",
            "--max-steps", "2", "--batch-size", "2", *FAST)
    assert not (merged / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert AutoTokenizer.from_pretrained(merged).pad_token == "<|pad|>"
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert json.loads((merged / "caitool_training.json").read_text())["lora"]["r"] == 4


def test_accelerate_launch_with_two_cpu_processes(tmp_path, tiny_model):
    data = write(tmp_path / "d.jsonl", [{"prompt": f"Question {i}?", "response": "Answer."}
                                        for i in range(16)])
    out = tmp_path / "sft"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CAITOOL_QUIET": "0"}
    # --multi_gpu starts the processes with torchrun; with no GPU they train on the CPU.
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
         "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "caitool", "train-sft", str(data), "-m", str(tiny_model), "-o", str(out),
         "--max-steps", "3", "--batch-size", "2", "--logging-steps", "1"],
        capture_output=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    lines = [line for line in metrics(result.stdout) if "loss" in line]
    # One metrics line per step, from the main process only; 2 processes x 2 examples a step.
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert lines[0]["epoch"] == pytest.approx(4 / 16)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()


def test_trl_fields_from_flags_and_config_reach_the_trainer(tmp_path, tiny_model):
    import importlib.util

    data = write(tmp_path / "d.jsonl", [{"prompt": "Say hi.", "response": "Hi."}] * 4)
    config = tmp_path / "sft.yaml"
    config.write_text("warmup_steps: 2\n")
    common = [data, "-m", tiny_model, "--max-steps", "4", "--batch-size", "2",
              "--learning-rate", "0.01", *FAST]
    # A field no caitool flag sets, as a flag; another from the file: both shape the schedule.
    result = caitool("train-sft", *common, "-o", tmp_path / "sft", "--config", config,
                     "--lr_scheduler_type", "constant_with_warmup")
    rates = series(metrics(result.stdout), "learning_rate")
    assert rates == [0.0, 0.005, 0.01, 0.01], rates

    reported = caitool("train-sft", *common, "-o", tmp_path / "tb", "--report-to", "tensorboard",
                       check=False)
    if importlib.util.find_spec("tensorboard") is None:
        err = reported.stderr.decode()
        assert reported.returncode == 1 and "Traceback" not in err
        assert "cannot set up training: TensorBoardCallback requires tensorboard" in err
    else:
        assert reported.returncode == 0
        assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
