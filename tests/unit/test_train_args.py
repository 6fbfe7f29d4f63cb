"""Every TRL config field reaches each trainer's config, as a flag and as a --config key,
with TRL's names; unknown or bad ones are one-line errors. Configs are built, not trained."""

from __future__ import annotations

import pytest

from caitool.commands._training import TrainFlags
from caitool.commands.train_ppo import PPOFlags
from caitool.errors import CaitoolError
from caitool.training import args, dpo, ppo, rm, sft
from caitool.training.args import FlagError
from helpers import NEEDS_PPO, NO_PPO

# Per trainer: fields no caitool flag sets, as TRL-named flags, and what the config then holds.
TRAINERS = {
    "sft": (sft, ["--packing", "--dataset_text_field", "body"], {"packing": True, "dataset_text_field": "body"}),
    "rm": (rm, ["--center_rewards_coefficient", "0.01"], {"center_rewards_coefficient": 0.01}),
    "dpo": (dpo, ["--loss-type", "ipo"], {"loss_type": ["ipo"]}),
    "ppo": (ppo, ["--num_ppo_epochs", "2", "--whiten_rewards"], {"num_ppo_epochs": 2, "whiten_rewards": True}),
}
COMMON = ["--lr_scheduler_type", "constant", "--warmup-steps=3", "--weight_decay", "0.01"]


def parsed(trainer, arguments: list[str]) -> tuple[TrainFlags, args.Request]:
    if trainer is ppo and NO_PPO:
        pytest.skip(NO_PPO)
    groups = (TrainFlags, PPOFlags) if trainer is ppo else (TrainFlags,)
    filled, asked = args.parse(groups, trainer.config_class, ["-m", "m", "-o", "o", *arguments],
                               trainer.OWNED)
    return filled[0], asked


def settings(trainer, arguments: list[str]) -> args.Settings:
    train_flags, asked = parsed(trainer, arguments)
    if trainer is ppo:
        return ppo.configure(train_flags, asked, reward_model="rm")
    return trainer.configure(train_flags, asked)


def holds(config, expected: dict) -> None:
    for name, value in expected.items():
        actual = getattr(config, name)
        assert getattr(actual, "value", actual) == value, (name, actual)


@pytest.mark.parametrize("name", TRAINERS)
def test_trl_fields_as_flags_among_the_inputs(name):
    trainer, extra, expected = TRAINERS[name]
    built = settings(trainer, ["a.jsonl", *COMMON, "b.jsonl", *extra])
    assert built.inputs == ["a.jsonl", "b.jsonl"]
    holds(built.args, {"lr_scheduler_type": "constant", "warmup_steps": 3, "weight_decay": 0.01,
                       **expected})
    assert built.args.output_dir == "o/checkpoints"


@pytest.mark.parametrize("name", TRAINERS)
def test_trl_fields_in_the_config_file(name, tmp_path):
    import yaml

    trainer, extra, expected = TRAINERS[name]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"lr_scheduler_type": "constant", "warmup_steps": 3,
                                    **{k: v[0] if k == "loss_type" else v for k, v in expected.items()}}))
    built = settings(trainer, ["--config", str(path)])
    assert built.inputs == ["-"]
    holds(built.args, {"lr_scheduler_type": "constant", "warmup_steps": 3, **expected})


def test_precedence_file_then_shortcuts_then_trl_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\nper_device_eval_batch_size: 2\nseed: 7\nnum_train_epochs: 2\n")
    built = settings(sft, ["--config", str(path), "--learning-rate", "0.1", "--batch-size", "8",
                           "--per-device-eval-batch-size", "4", "--epochs", "3"])
    config = built.args
    # A TRL field named like a caitool flag is that flag: one value, the flag's over the file's.
    assert config.learning_rate == 0.1 and config.seed == 7
    assert config.per_device_train_batch_size == 8 and config.per_device_eval_batch_size == 4
    assert config.num_train_epochs == 3
    assert settings(sft, ["--epochs", "3", "--num_train_epochs", "5"]).args.num_train_epochs == 5


def test_a_bare_boolean_flag_is_true_and_leaves_the_next_input_alone():
    built = settings(sft, ["--packing", "data.jsonl", "--use_liger_kernel", "false", "--lora", "b"])
    assert built.inputs == ["data.jsonl", "b"]
    assert built.args.packing is True and built.args.use_liger_kernel is False
    assert built.lora is not None
    built = settings(sft, ["--no_gradient_checkpointing", "-"])
    assert built.inputs == ["-"] and built.args.activation_checkpointing is False


def test_ppo_keeps_its_own_meaning_of_the_shortcuts():
    # --max-length cuts prompts, --max-steps counts rollout batches: neither is TRL's field.
    built = settings(ppo, ["--max-length", "32", "--max-steps", "5", "--batch-size", "4",
                           "--stop_token_id", "3"])
    config = built.args
    assert config.max_steps == -1 and config.per_device_train_batch_size == 4
    assert config.stop_token_id == 3 and config.stop_token is None
    assert config.sft_model_path == "m" and config.reward_model_path == "rm"


def test_ppo_responses_are_as_long_as_generations_by_default():
    # A shorter limit cuts real answers (the SFT data is written at generate's length), and
    # the missing-EOS penalty then teaches short replies.
    from caitool.commands._flags import SamplingFlags

    assert settings(ppo, []).args.response_length == SamplingFlags().max_new_tokens
    train_flags, asked = parsed(ppo, [])
    assert ppo.configure(train_flags, asked, "rm", max_new_tokens=12).args.response_length == 12
    # The penalty and the stop token stay as documented.
    config = settings(ppo, []).args
    assert config.missing_eos_penalty == 1.0 and config.stop_token == "eos"


@pytest.mark.parametrize("arguments, message", [
    (["--lr_schedular_type", "constant"], "no such option: --lr_schedular_type: not a caitool "
                                          "flag nor a field of TRL's SFTConfig (did you mean "
                                          "'--lr_scheduler_type'?)"),
    (["--epoch", "3"], "did you mean '--epochs'?"),
    (["--resum"], "did you mean '--resume'?"),
    (["--resume_from_checkpoint", "x"], "--resume_from_checkpoint: set it with --resume-from"),
    (["--lr_scheduler_type", "sometimes"], "invalid choice: 'sometimes'"),
    (["--weight_decay", "heavy"], "invalid float value: 'heavy'"),
    (["--output_dir", "x"], "--output_dir: set it with -o/--output"),
])
def test_unknown_and_bad_flags_are_usage_errors(arguments, message):
    with pytest.raises(FlagError) as error:
        settings(sft, ["data.jsonl", *arguments])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_fields_caitool_sets_are_refused():
    with pytest.raises(FlagError, match="set it with -r/--reward-model"):
        settings(ppo, ["--reward_model_path", "x"])


def test_report_to(tmp_path, monkeypatch):
    assert settings(sft, []).args.report_to == []  # caitool's default: none
    built = settings(sft, ["--report-to", "tensorboard"])
    assert built.args.report_to == ["tensorboard"]
    assert settings(sft, ["--report-to", "tensorboard,wandb"]).args.report_to == \
        ["tensorboard", "wandb"]
    assert settings(dpo, ["--report_to", "mlflow"]).args.report_to == ["mlflow"]
    path = tmp_path / "c.yaml"
    path.write_text("report_to: [wandb]\n")
    assert settings(rm, ["--config", str(path)]).args.report_to == ["wandb"]
    with pytest.raises(CaitoolError, match="'tensorbord' is not one of .*did you mean 'tensorboard'"):
        settings(sft, ["--report-to", "tensorbord"])


@NEEDS_PPO
def test_help_is_trls_own():
    from trl.experimental.ppo import PPOConfig

    from caitool.commands._training import trl_help

    text = trl_help(ppo.config_class(), "train-ppo", ppo.OWNED)
    assert "PPOConfig fields" in text and "--num_ppo_epochs" in text
    help_text = PPOConfig.__dataclass_fields__["num_ppo_epochs"].metadata["help"]
    assert " ".join(help_text.split()[:4]) in " ".join(text.split())
    assert "reward_model_path -r/--reward-model" in " ".join(text.split())


@pytest.mark.parametrize("name", TRAINERS)
def test_every_field_is_a_flag_and_a_config_key(name, tmp_path):
    import dataclasses
    import enum

    import yaml

    trainer = TRAINERS[name][0]
    if trainer is ppo and NO_PPO:
        pytest.skip(NO_PPO)
    config_cls = trainer.config_class()
    owned = {**args.OWNED, **trainer.OWNED}
    flags_known = {option for action in args.trl_parser(config_cls)._actions
                   for option in action.option_strings}
    defaults = {}
    for field in dataclasses.fields(config_cls):
        if not field.init or field.name in owned:
            continue
        assert f"--{field.name}" in flags_known, field.name
        if field.default is not dataclasses.MISSING:
            value = field.default
            defaults[field.name] = value.value if isinstance(value, enum.Enum) else value
    # Every field is a key the file may hold.
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(defaults))
    groups = (TrainFlags, PPOFlags) if trainer is ppo else (TrainFlags,)
    filled, asked = args.parse(groups, trainer.config_class, ["--config", str(path)], trainer.OWNED)
    # Fields that are caitool flags (max_steps, seed ...) land there; the rest in the request.
    ours = {f.name: getattr(group, f.name) for group in filled
            for f in dataclasses.fields(group) if f.name in defaults}
    assert {**asked.file, **ours} == defaults


# -- values no run can use: one line naming the flag, or the file and its key ----------------


@pytest.mark.parametrize("text, message", [
    ("learning_rate: fast\n", "'learning_rate' must be a number, not 'fast'"),
    ("learning_rate: .nan\n", "'learning_rate': nan is not a finite number"),
    ("per_device_train_batch_size: 0\n", "'per_device_train_batch_size' must be at least 1"),
    ("max_steps: 0\n", "'max_steps' must be at least 1"),
    ("num_train_epochs: -1\n", "'num_train_epochs' must be positive"),
    ("gradient_accumulation_steps: true\n", "'gradient_accumulation_steps' must be a whole number, not True"),
    ("gradient_accumulation_steps: 1.5\n", "'gradient_accumulation_steps' must be a whole number, not 1.5"),
    ("lr_scheduler_type: sometimes\n", "'lr_scheduler_type' must be one of linear, cosine"),
    ("packing: maybe\n", "'packing' must be true or false, not 'maybe'"),
])
def test_bad_values_in_the_config_file_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CaitoolError) as error:
        settings(sft, ["--config", str(path)])
    assert str(error.value).startswith(f"{path}: {message}") and "\n" not in str(error.value)


def test_values_the_file_gives_as_text_are_read_as_the_flag_reads_them(tmp_path):
    # YAML reads 1e-5 as text, and a quoted number is text: the flag would take them.
    path = tmp_path / "c.yaml"
    path.write_text('max_steps: "2"\nlearning_rate: 1e-5\nwarmup_steps: "3"\n')
    config = settings(sft, ["--config", str(path)]).args
    assert config.max_steps == 2 and config.learning_rate == 1e-5 and config.warmup_steps == 3


@pytest.mark.parametrize("arguments, message", [
    (["--per_device_train_batch_size", "0"], "--per-device-train-batch-size must be at least 1"),
    (["--per-device-eval-batch-size=0"], "--per-device-eval-batch-size must be at least 1"),
    (["--num_train_epochs", "0"], "--num-train-epochs must be positive"),
    (["--learning_rate", "nan"], "--learning-rate: nan is not a finite number"),
    (["--weight_decay", "inf"], "--weight-decay: inf is not a finite number"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_values_as_flags_are_one_line(arguments, message):
    with pytest.raises(CaitoolError, match=message):
        settings(sft, ["data.jsonl", *arguments])


def test_a_bad_config_value_is_one_line_from_the_command(tmp_path):
    from helpers import jsonl, run_cli

    data, path = tmp_path / "d.jsonl", tmp_path / "c.yaml"
    data.write_text(jsonl([{"prompt": "a", "response": "b"}]))
    path.write_text("per_device_train_batch_size: 0\n")
    result = run_cli("train-sft", data, "-m", tmp_path / "no-model", "-o", tmp_path / "o",
                     "--config", path)
    assert result.returncode == 1 and not (tmp_path / "o").exists()
    assert result.stderr.decode() == (f"caitool train-sft: {path}: 'per_device_train_batch_size' "
                                      "must be at least 1\n")


def test_the_commands_own_flags_are_parsed_with_the_rest():
    from caitool.commands.train_rm import RMFlags

    (train, own), asked = args.parse(
        (TrainFlags, RMFlags), rm.config_class,
        ["a.jsonl", "--eval-file", "h1.jsonl", "--lora", "--eval_file=h2.jsonl", "b.jsonl",
         "--labels", "hard", "--max-steps", "3", "--margin", "0.5"])
    assert asked.inputs == ["a.jsonl", "b.jsonl"] and asked.flags == {} and asked.file == {}
    assert own.eval_file == ["h1.jsonl", "h2.jsonl"] and own.labels == "hard" and own.margin == 0.5
    assert train.lora is True and train.max_steps == 3 and train.epochs is None
    # Without a TRL field or a --config, TRL is not needed to parse them.
    (train,), asked = args.parse((TrainFlags,), lambda: pytest.fail("TRL loaded"),
                                 ["-m", "m", "--resume", "x.jsonl"])
    assert train.resume is True and asked.inputs == ["x.jsonl"]
