"""train-sft learns: the loss falls and the tiny model answers as it was taught."""

from __future__ import annotations

import json
import os
import signal
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
         "--max-steps", "3", "--batch-size", "2", "--logging-steps", "1", "--save-steps", "2"],
        capture_output=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    lines = [line for line in metrics(result.stdout) if "loss" in line]
    # One metrics line per step, from the main process only; 2 processes x 2 examples a step.
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert lines[0]["epoch"] == pytest.approx(4 / 16)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    # Marked complete once both processes had saved their part.
    assert (out / "checkpoints" / "checkpoint-2" / "caitool_checkpoint.json").is_file()


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


# -- a run killed while it saves a checkpoint resumes from the newest complete one ----------

KILL_DURING_SAVE = """
import os, signal, sys
import transformers
original = transformers.Trainer._save_rng_state
def save_then_die(self, output_dir):
    # Weights, optimizer and scheduler are written; the random states, trainer_state.json
    # and caitool's marker are not: a kill -9 half-way through saving checkpoint-4.
    if self.state.global_step == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, output_dir)
transformers.Trainer._save_rng_state = save_then_die
from caitool.cli import main
main(sys.argv[1:])
"""


def _resume_run(tmp_path, tiny_model):
    data = write(tmp_path / "d.jsonl", [{"prompt": f"Question {i}?", "response": f"Answer {i}."}
                                        for i in range(8)])
    out, log = tmp_path / "sft", tmp_path / "metrics.jsonl"
    return out, log, [data, "-m", tiny_model, "-o", out, "--batch-size", "2", "--save-steps", "2",
                      "--logging-steps", "1", "--metrics", log]


def _check_resumed(result, out, log, before: list[dict]) -> None:
    err = result.stderr.decode()
    checkpoints = out / "checkpoints"
    assert f"resuming from {checkpoints / 'checkpoint-2'} (step 2)" in err, err
    assert f"removed {checkpoints / 'checkpoint-4'}: its save did not finish" in err
    lines = metrics(log.read_bytes())
    trained = [line for line in lines if "loss" in line]
    assert [line["step"] for line in trained] == [1, 2, 3, 4, 5, 6]  # none twice, none lost
    # The resumed run sees the same batches (same loss) and counts tokens on from step 2.
    first_three = {line["step"]: line for line in before if "loss" in line and line["step"] <= 3}
    assert trained[2]["num_tokens"] == first_three[3]["num_tokens"] > trained[1]["num_tokens"]
    assert trained[2]["loss"] == pytest.approx(first_three[3]["loss"], rel=1e-5)
    assert series(lines, "num_tokens") == sorted(series(lines, "num_tokens"))
    for name in ("checkpoint-2", "checkpoint-4", "checkpoint-6"):
        assert (checkpoints / name / "caitool_checkpoint.json").is_file()
    assert (out / "model.safetensors").exists()


def test_a_kill_during_a_checkpoint_save_resumes_from_the_last_complete_one(tmp_path, tiny_model):
    out, log, common = _resume_run(tmp_path, tiny_model)
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, "train-sft", *map(str, common),
                             "--max-steps", "6"],
                            capture_output=True, env={**os.environ, "CAITOOL_QUIET": "0"}, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    cut = out / "checkpoints" / "checkpoint-4"
    assert (cut / "model.safetensors").exists() and not (cut / "trainer_state.json").exists()
    before = metrics(log.read_bytes())
    assert [line["step"] for line in before if "loss" in line] == [1, 2, 3, 4]
    resumed = caitool("train-sft", *common, "--max-steps", "6", "--resume")
    _check_resumed(resumed, out, log, before)


def test_a_checkpoint_missing_its_files_is_passed_over(tmp_path, tiny_model):
    out, log, common = _resume_run(tmp_path, tiny_model)
    caitool("train-sft", *common, "--max-steps", "4")
    before = metrics(log.read_bytes())
    cut = out / "checkpoints" / "checkpoint-4"
    # As a kill during its save leaves it: half the weights, no state, no marker; and the
    # metrics line being written when the kill came, torn.
    for name in ("caitool_checkpoint.json", "trainer_state.json", "rng_state.pth"):
        (cut / name).unlink()
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with open(log, "a") as handle:
        handle.write('{"command": "train-sft", "step": 5, "lo')
    # Named explicitly, it is refused in one line.
    refused = caitool("train-sft", *common, "--max-steps", "6", "--resume-from", cut, check=False)
    assert refused.returncode == 1 and refused.stderr.decode().endswith(
        f"--resume-from {cut}: not a complete checkpoint (its save did not finish)\n")
    resumed = caitool("train-sft", *common, "--max-steps", "6", "--resume")
    _check_resumed(resumed, out, log, before)
    assert "dropped 4 line(s) logged after step 2" in resumed.stderr.decode()
