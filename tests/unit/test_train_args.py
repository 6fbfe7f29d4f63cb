"""Every TRL config field reaches each trainer's config, as a flag and as a --config key,
with TRL's names; unknown or bad ones are one-line errors. Configs are built, not trained."""

from __future__ import annotations

import pytest

from caitool.commands._training import TrainFlags
from caitool.errors import CaitoolError
from caitool.training import args, dpo, ppo, rm, sft
from caitool.training.args import FlagError

# Per trainer: fields no caitool flag sets, as TRL-named flags, and what the config then holds.
TRAINERS = {
    "sft": (sft, ["--packing", "--dataset_text_field", "body"], {"packing": True, "dataset_text_field": "body"}),
    "rm": (rm, ["--center_rewards_coefficient", "0.01"], {"center_rewards_coefficient": 0.01}),
    "dpo": (dpo, ["--loss-type", "ipo"], {"loss_type": ["ipo"]}),
    "ppo": (ppo, ["--num_ppo_epochs", "2", "--whiten_rewards"], {"num_ppo_epochs": 2, "whiten_rewards": True}),
}
COMMON = ["--lr_scheduler_type", "constant", "--warmup-steps=3", "--weight_decay", "0.01"]


def flags(**kw) -> TrainFlags:
    return TrainFlags(**{"model": "m", "output": "o", **kw})


def settings(trainer, train_flags: TrainFlags, arguments: list[str]) -> args.Settings:
    asked = args.request(trainer.config_class, train_flags, arguments, trainer.OWNED)
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
    built = settings(trainer, flags(), ["a.jsonl", *COMMON, "b.jsonl", *extra])
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
    built = settings(trainer, flags(config=str(path)), [])
    assert built.inputs == ["-"]
    holds(built.args, {"lr_scheduler_type": "constant", "warmup_steps": 3, **expected})


def test_precedence_file_then_shortcuts_then_trl_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\nper_device_eval_batch_size: 2\nseed: 7\n")
    built = settings(sft, flags(config=str(path), learning_rate=0.1, batch_size=8),
                     ["--learning_rate", "0.2", "--per-device-eval-batch-size", "4"])
    config = built.args
    assert config.learning_rate == 0.2 and config.seed == 7
    assert config.per_device_train_batch_size == 8 and config.per_device_eval_batch_size == 4


def test_a_bare_boolean_flag_is_true_and_leaves_the_next_input_alone():
    built = settings(sft, flags(), ["--packing", "data.jsonl", "--use_liger_kernel", "false"])
    assert built.inputs == ["data.jsonl"]
    assert built.args.packing is True and built.args.use_liger_kernel is False
    built = settings(sft, flags(), ["--no_gradient_checkpointing", "-"])
    assert built.inputs == ["-"] and built.args.activation_checkpointing is False


def test_ppo_keeps_its_own_meaning_of_the_shortcuts():
    # --max-length cuts prompts, --max-steps counts rollout batches: neither is TRL's field.
    built = settings(ppo, flags(max_length=32, max_steps=5, batch_size=4), ["--stop_token_id", "3"])
    config = built.args
    assert config.max_steps == -1 and config.per_device_train_batch_size == 4
    assert config.stop_token_id == 3 and config.stop_token is None
    assert config.sft_model_path == "m" and config.reward_model_path == "rm"


def test_ppo_responses_are_as_long_as_generations_by_default():
    # A shorter limit cuts real answers (the SFT data is written at generate's length), and
    # the missing-EOS penalty then teaches short replies.
    from caitool.commands._flags import SamplingFlags

    assert settings(ppo, flags(), []).args.response_length == SamplingFlags().max_new_tokens
    asked = args.request(ppo.config_class, flags(), [], ppo.OWNED)
    assert ppo.configure(flags(), asked, "rm", max_new_tokens=12).args.response_length == 12
    # The penalty and the stop token stay as documented.
    config = settings(ppo, flags(), []).args
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
        settings(sft, flags(), ["data.jsonl", *arguments])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_fields_caitool_sets_are_refused():
    with pytest.raises(FlagError, match="set it with -r/--reward-model"):
        settings(ppo, flags(), ["--reward_model_path", "x"])


def test_report_to(tmp_path, monkeypatch):
    assert settings(sft, flags(), []).args.report_to == []  # caitool's default: none
    built = settings(sft, flags(report_to="tensorboard"), [])
    assert built.args.report_to == ["tensorboard"]
    assert settings(sft, flags(report_to="tensorboard,wandb"), []).args.report_to == \
        ["tensorboard", "wandb"]
    assert settings(dpo, flags(), ["--report_to", "mlflow"]).args.report_to == ["mlflow"]
    path = tmp_path / "c.yaml"
    path.write_text("report_to: [wandb]\n")
    assert settings(rm, flags(config=str(path)), []).args.report_to == ["wandb"]
    with pytest.raises(CaitoolError, match="'tensorbord' is not one of .*did you mean 'tensorboard'"):
        settings(sft, flags(report_to="tensorbord"), [])


def test_help_is_trls_own():
    from trl.experimental.ppo import PPOConfig

    text = args.trl_help(ppo.config_class(), "train-ppo", ppo.OWNED)
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
    asked = args.request(trainer.config_class, flags(config=str(path)), [], trainer.OWNED)
    assert asked.file == defaults
