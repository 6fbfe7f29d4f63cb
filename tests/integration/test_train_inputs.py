"""Training commands refuse bad input fast and clearly: bad data, bad flags and config
files stop them with one line, before any model is loaded. No training here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import NEEDS_PPO, caitool, jsonl

COMMANDS = ("train-sft", "train-rm", "train-dpo", "train-ppo")
# As parameters: train-ppo's runs skip where TRL has no PPO.
RUNS = (*COMMANDS[:-1], pytest.param("train-ppo", marks=NEEDS_PPO))


def run_fails(*args, input=None):
    result = caitool(*args, input=input, check=False)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", RUNS)
def test_empty_input_fails_before_any_model_is_loaded(tmp_path, command):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    # The model does not exist: the data error must come first.
    err = run_fails(command, empty, "-m", tmp_path / "no-such-model", "-r", tmp_path / "no-rm",
                    "-o", tmp_path / "out") if command == "train-ppo" else \
        run_fails(command, empty, "-m", tmp_path / "no-such-model", "-o", tmp_path / "out")
    assert f"caitool {command}: {empty}: no training examples" in err
    assert not (tmp_path / "out").exists()


def test_an_empty_file_among_several_is_named_and_the_others_read(tmp_path):
    good, empty = tmp_path / "good.jsonl", tmp_path / "empty.jsonl"
    good.write_text(jsonl([{"prompt": "a", "chosen": "b", "rejected": "c"}]))
    empty.write_text("")
    # The data is read (one file warned about), so the missing model is what stops it.
    err = run_fails("train-rm", good, empty, "-m", tmp_path / "no-such-model", "-o", tmp_path / "out")
    assert f"caitool train-rm: warning: {empty}: no records in it" in err
    assert "no training examples" not in err and "no-such-model" in err


def test_malformed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "f.jsonl"
    bad.write_text(jsonl([{"prompt": "a", "response": "b"}] * 2) + "{not json\n")
    err = run_fails("train-sft", bad, "-m", tmp_path / "no-such-model", "-o", tmp_path / "out")
    assert err.startswith(f"caitool train-sft: {bad}:3: invalid JSON")


@pytest.mark.parametrize("command, row, problem", [
    ("train-sft", {"prompt": "hi"}, "no training target"),
    ("train-sft", {"messages": [{"role": "assistant", "content": "x"}]}, "no user turn"),
    ("train-sft", {"prompt": "hi", "completion": ["x"]}, "'completion[0]' must be an object"),
    ("train-rm", {"prompt": "hi", "chosen": "a", "rejected": "b", "p_chosen": 1.5},
     "'p_chosen' must be a number in [0, 1]"),
    ("train-rm", {"prompt": "hi", "chosen": "a"}, "missing 'rejected'"),
    ("train-dpo", {"prompt": "hi", "chosen": "a", "rejected": 3}, "'rejected' must be a string"),
    ("train-ppo", {"response": "x"}, "missing 'prompt'"),
    ("train-rm", {"prompt": "hi", "chosen": "a", "rejected": "b", "margin": 10 ** 400},
     "'margin' must be a finite number"),
])
def test_bad_records_are_reported_with_their_line(tmp_path, command, row, problem):
    good = {"train-sft": {"prompt": "a", "response": "b"},
            "train-ppo": {"prompt": "a"}}.get(command, {"prompt": "a", "chosen": "b", "rejected": "c"})
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl([good, row]))
    extra = ["-r", tmp_path / "no-rm"] if command == "train-ppo" else []
    err = run_fails(command, path, "-m", tmp_path / "no-model", "-o", tmp_path / "out", *extra)
    assert f"caitool {command}: {path}:2: " in err and problem in err, err


def test_skip_invalid_reports_and_goes_on(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl([{"prompt": "hi"}]))
    # With every line skipped there is nothing left: still a clear error, after the report.
    err = run_fails("train-sft", path, "-m", tmp_path / "m", "-o", tmp_path / "o", "--skip-invalid")
    assert "skipped" in err and "no training examples" in err


def test_flag_and_config_errors(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl([{"prompt": "a", "response": "b"}]))
    assert "no output directory" in run_fails("train-sft", path, "-m", "x")
    assert "--max-steps must be at least 1" in run_fails(
        "train-sft", path, "-m", "x", "-o", tmp_path / "o", "--max-steps", "0")
    config = tmp_path / "c.yaml"
    config.write_text("learning_rte: 0.1\n")
    err = run_fails("train-sft", path, "-m", "x", "-o", tmp_path / "o", "--config", config)
    assert "'learning_rte' is not a SFTConfig field (did you mean 'learning_rate'?)" in err
    assert "cannot load the model" in run_fails(
        "train-sft", path, "-m", tmp_path / "no-model", "-o", tmp_path / "o")


# -- TRL config fields as flags ------------------------------------------------------------


@pytest.mark.parametrize("command", RUNS)
def test_an_unknown_flag_is_one_line_before_any_model_is_loaded(tmp_path, command):
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl([{"prompt": "a", "response": "b", "chosen": "b", "rejected": "c"}]))
    extra = ["-r", tmp_path / "no-rm"] if command == "train-ppo" else []
    result = caitool(command, path, "-m", tmp_path / "no-model", "-o", tmp_path / "out", *extra,
                     "--lr_schedular_type", "constant", check=False)
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"caitool {command}: no such option: --lr_schedular_type")
    assert "did you mean '--lr_scheduler_type'?" in err


def test_a_bad_value_is_one_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl([{"prompt": "a", "response": "b"}]))
    result = caitool("train-sft", path, "-m", "x", "-o", tmp_path / "o", "--weight-decay", "heavy",
                     check=False)
    assert result.returncode == 2
    assert result.stderr.decode() == ("caitool train-sft: --weight_decay/--weight-decay: invalid "
                                      "float value: 'heavy'\n")


def test_help_names_the_trl_flags_and_help_trl_lists_them():
    helped = caitool("train-sft", "--help", env={"COLUMNS": "200"}).stdout.decode()
    assert "--help-trl" in helped and "--lr_scheduler_type" in helped
    assert "--report-to" in helped
    listed = caitool("train-dpo", "--help-trl").stdout.decode()
    assert "DPOConfig fields" in listed and "--loss_type" in listed and "--beta" in listed


@pytest.mark.parametrize("argv", [[], ["--help"], *([c, "--help"] for c in COMMANDS)])
def test_help_loads_no_training_library(argv):
    code = ("import sys\nfrom caitool.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'trl', 'transformers', 'torch'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines()[-1] == "[]", result.stderr


def test_a_margin_that_no_float_holds_is_a_line_error(tmp_path):
    path = tmp_path / "data.jsonl"
    for margin in ("1e999", "NaN", "-Infinity"):
        path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
                        f'{{"prompt": "a", "chosen": "b", "rejected": "c", "margin": {margin}}}\n')
        err = run_fails("train-rm", path, "-m", tmp_path / "no-model", "-o", tmp_path / "out")
        # The reader refuses what JSON cannot hold; what gets past it, the record check does.
        assert err.startswith(f"caitool train-rm: {path}:2: ") and len(err.splitlines()) == 1, err
    assert "not a finite number" in run_fails(
        "train-rm", path, "-m", tmp_path / "no-model", "-o", tmp_path / "out", "--margin", "nan")


# -- outputs that cannot be written: named before any data is read or model loaded ----------


@pytest.mark.parametrize("command", RUNS)
def test_an_output_directory_that_cannot_be_written_is_named_first(tmp_path, command):
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl([{"prompt": "a", "response": "b", "chosen": "b", "rejected": "c"}]))
    extra = ["-r", tmp_path / "no-rm"] if command == "train-ppo" else []
    result = caitool(command, path, "-m", tmp_path / "no-model", "-o", "/proc/x", *extra, check=False)
    assert result.returncode == 1
    assert result.stderr.decode() == (f"caitool {command}: -o /proc/x: cannot write there "
                                      "(No such file or directory)\n")


@pytest.mark.parametrize("where, message", [
    (["-o", "{file}/sub"], "-o {file}/sub: {file} is a file, not a directory"),
    (["-o", "{file}"], "-o {file}: not a directory"),
    (["-o", "{tmp}/out", "--metrics", "/proc/x"], "--metrics /proc/x: cannot write there"),
    (["-o", "{tmp}/out", "--metrics", "{tmp}"], "--metrics {tmp}: is a directory; name a file"),
])
def test_unwritable_outputs_are_one_line_before_any_work(tmp_path, where, message):
    data = tmp_path / "data.jsonl"
    data.write_text(jsonl([{"prompt": "a", "response": "b"}]))
    places = {"file": data, "tmp": tmp_path}
    result = caitool("train-sft", data, "-m", tmp_path / "no-model",
                     *(arg.format(**places) for arg in where), check=False)
    err = result.stderr.decode()
    assert result.returncode == 1 and len(err.splitlines()) == 1, err
    assert message.format(**places) in err
    assert not (tmp_path / "out").exists()


def test_a_yaml_alias_bomb_in_a_config_fails_fast(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl([{"prompt": "a", "response": "b"}]))
    config = tmp_path / "bomb.yaml"
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    config.write_text("\n".join(levels) + "\nlearning_rate: *i\n")
    err = run_fails("train-sft", path, "-m", tmp_path / "no-model", "-o", tmp_path / "o",
                    "--config", config)
    assert err == (f"caitool train-sft: {config}: invalid YAML (aliases expand it past 100,000 "
                   "values; refused as an alias bomb)\n")
