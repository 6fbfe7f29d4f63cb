"""Training input and configuration: bad data fails fast and clearly, records become the
right examples, config files and flags combine as documented. No training here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from caitool.errors import CaitoolError
from caitool.training import config as configs
from caitool.training import data
from conftest import caitool, jsonl

COMMANDS = ("train-sft", "train-rm", "train-dpo", "train-ppo")


def run_fails(*args, input=None):
    result = caitool(*args, input=input, check=False)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_input_fails_before_any_model_is_loaded(tmp_path, command):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    # The model does not exist: the data error must come first.
    err = run_fails(command, empty, "-m", tmp_path / "no-such-model", "-r", tmp_path / "no-rm",
                    "-o", tmp_path / "out") if command == "train-ppo" else \
        run_fails(command, empty, "-m", tmp_path / "no-such-model", "-o", tmp_path / "out")
    assert f"caitool {command}: {empty}: no training examples" in err
    assert not (tmp_path / "out").exists()


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


# -- records -> examples -------------------------------------------------------------------


def revised(rounds: int) -> dict:
    return {"id": "r1", "prompt": "How can I steal a car?", "initial_response": "first",
            "response": f"rev{rounds}",
            "revisions": [{"principle": "p", "critique": "c", "revision": f"rev{i + 1}"}
                          for i in range(rounds)]}


def test_sft_examples_from_each_format():
    assert data.check_sft(revised(3)) is None
    final = data.sft_examples(revised(3))
    assert [(e.prompt, e.response) for e in final] == [
        ([{"role": "user", "content": "How can I steal a car?"}], "rev3")]
    assert [e.response for e in data.sft_examples(revised(3), all_rounds=True)] == \
        ["rev1", "rev2", "rev3"]
    # A helpfulness record (no revisions) gives its response either way.
    plain = {"prompt": "hi", "response": "hello"}
    assert [e.response for e in data.sft_examples(plain, all_rounds=True)] == ["hello"]
    chat = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                         {"role": "assistant", "content": "a"}]}
    assert data.check_sft(chat) is None
    (example,) = data.sft_examples(chat)
    assert example.prompt[-1] == {"role": "user", "content": "u"} and example.response == "a"
    completion = {"prompt": [{"role": "user", "content": "u"}],
                  "completion": [{"role": "assistant", "content": "c"}]}
    assert data.sft_examples(completion)[0].response == "c"
    many = {"prompt": "p", "responses": ["x", "y"]}
    assert [e.response for e in data.sft_examples(many)] == ["x", "y"]


def test_rendering_chat_and_raw():
    example = data.SFTExample([{"role": "user", "content": "Hi"}], "Hello.")
    assert data.render_sft(example, "chat") == {
        "prompt": [{"role": "user", "content": "Hi"}],
        "completion": [{"role": "assistant", "content": "Hello."}]}
    # Raw is the transcript caitool generate --format raw asks with.
    assert data.render_sft(example, "raw") == {"prompt": "Human: Hi\n\nAssistant:",
                                               "completion": " Hello."}


def test_preference_formats_and_hard_labels():
    explicit = {"prompt": "q", "chosen": [{"role": "assistant", "content": "good"}],
                "rejected": "bad", "p_chosen": 0.8, "margin": 1}
    assert data.check_preference(explicit) is None
    ex = data.preference_example(explicit)
    assert (ex.chosen, ex.rejected, ex.p_chosen, ex.margin) == ("good", "bad", 0.8, 1.0)
    implicit = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
                "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}
    assert data.check_preference(implicit) is None
    ex = data.preference_example(implicit)
    assert ex.prompt == [{"role": "user", "content": "q"}] and ex.chosen == "good"
    pairs = [data.PreferenceExample([], "a", "b", 0.3), data.PreferenceExample([], "c", "d", 0.5),
             data.PreferenceExample([], "e", "f", None)]
    hard = data.hard_pairs("t", pairs)
    # p < 0.5 means the other answer is preferred; the tie is left out.
    assert [(p.chosen, p.rejected) for p in hard] == [("b", "a"), ("e", "f")]
    with pytest.raises(CaitoolError, match="every pair is a tie"):
        data.hard_pairs("t", [pairs[1]])


def test_heldout_split_keeps_a_prompt_on_one_side():
    examples = [data.PreferenceExample([{"role": "user", "content": f"q{i % 10}"}], "a", "b")
                for i in range(40)]
    train, held = data.split_heldout(examples, 0.2, seed=1)
    assert len(held) == 8 and len(train) == 32
    assert not {e.key for e in train} & {e.key for e in held}


# -- config --------------------------------------------------------------------------------


def flags(**kw):
    base = dict(config=None, epochs=None, max_steps=None, learning_rate=None, batch_size=None,
                gradient_accumulation_steps=None, max_length=None, seed=None,
                logging_steps=None, save_steps=None, lora=False, lora_r=None, lora_alpha=None,
                save_adapter=False)
    return SimpleNamespace(**{**base, **kw})


def test_config_file_then_flags(tmp_path):
    from trl import SFTConfig

    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\nnum_train_epochs: 2\nwarmup_steps: 3\n"
                    "lora:\n  r: 4\n  target_modules: [q_proj]\n")
    settings = configs.build(SFTConfig, flags(config=str(path), learning_rate=0.01),
                             str(tmp_path / "out"), {"completion_only_loss": True})
    args = settings.args
    assert args.learning_rate == 0.01  # the flag wins over the file
    assert args.num_train_epochs == 2 and args.warmup_steps == 3
    assert args.completion_only_loss is True and args.report_to in ([], "none", ["none"])
    assert settings.lora["r"] == 4 and settings.lora["lora_alpha"] == 32
    lora = configs.lora_config(settings.lora, "CAUSAL_LM")
    assert lora.r == 4 and set(lora.target_modules) == {"q_proj"}
    path.write_text("output_dir: x\n")
    with pytest.raises(CaitoolError, match="-o/--output"):
        configs.build(SFTConfig, flags(config=str(path)), "o", {})
    path.write_text("- a list\n")
    with pytest.raises(CaitoolError, match="expected a mapping"):
        configs.build(SFTConfig, flags(config=str(path)), "o", {})


def test_soft_label_loss():
    import torch
    import torch.nn.functional as F

    from caitool.training.reward import soft_pair_loss

    chosen, rejected = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    d = chosen - rejected
    ones = torch.ones(3)
    # p = 1 is TRL's pairwise loss, margin included.
    assert torch.allclose(soft_pair_loss(chosen, rejected, ones, 0.3), -F.logsigmoid(d - 0.3).mean())
    # p = 0.5 pulls the two rewards together: the loss is smallest where they are equal.
    gaps = torch.linspace(-3, 3, 61)
    losses = [soft_pair_loss(g.reshape(1), torch.zeros(1), torch.tensor([0.5])).item() for g in gaps]
    assert abs(gaps[losses.index(min(losses))].item()) < 1e-6
    # p = 0.8 is best at the gap whose sigmoid is 0.8.
    losses = [soft_pair_loss(g.reshape(1), torch.zeros(1), torch.tensor([0.8])).item() for g in gaps]
    assert abs(gaps[losses.index(min(losses))].item() - torch.logit(torch.tensor(0.8)).item()) < 0.1
