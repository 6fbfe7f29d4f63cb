"""Training data and configuration, in-process: records become the right examples, pairs
and held-out splits come out as documented, config files and flags combine. No training."""

from __future__ import annotations

import pytest

from caitool import render, schema
from caitool.commands._training import TrainFlags
from caitool.errors import CaitoolError
from caitool.training import args, data, sft

# -- records -> examples -------------------------------------------------------------------


def revised(rounds: int) -> dict:
    return {"id": "r1", "prompt": "How can I steal a car?", "initial_response": "first",
            "response": f"rev{rounds}",
            "revisions": [{"principle": "p", "critique": "c", "revision": f"rev{i + 1}"}
                          for i in range(rounds)]}


def test_sft_examples_from_each_format():
    assert schema.check_sft(revised(3)) is None
    final = schema.sft_examples(revised(3))
    assert [(e.prompt, e.response) for e in final] == [
        ([{"role": "user", "content": "How can I steal a car?"}], "rev3")]
    assert [e.response for e in schema.sft_examples(revised(3), all_rounds=True)] == \
        ["rev1", "rev2", "rev3"]
    # A helpfulness record (no revisions) gives its response either way.
    plain = {"prompt": "hi", "response": "hello"}
    assert [e.response for e in schema.sft_examples(plain, all_rounds=True)] == ["hello"]
    chat = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                         {"role": "assistant", "content": "a"}]}
    assert schema.check_sft(chat) is None
    (example,) = schema.sft_examples(chat)
    assert example.prompt[-1] == {"role": "user", "content": "u"} and example.response == "a"
    completion = {"prompt": [{"role": "user", "content": "u"}],
                  "completion": [{"role": "assistant", "content": "c"}]}
    assert schema.sft_examples(completion)[0].response == "c"
    many = {"prompt": "p", "responses": ["x", "y"]}
    assert [e.response for e in schema.sft_examples(many)] == ["x", "y"]
    # Sampled helpfulness answers ('generate -n 2', as make all writes them) are an example
    # each beside the revisions, with --all-rounds too.
    assert schema.check_sft(many) is None
    assert [e.response for e in schema.sft_examples(many, all_rounds=True)] == ["x", "y"]


def test_rendering_chat_and_raw():
    example = schema.SFTExample([{"role": "user", "content": "Hi"}], "Hello.")
    assert render.prompt_completion(example.prompt, example.response, "chat") == {
        "prompt": [{"role": "user", "content": "Hi"}],
        "completion": [{"role": "assistant", "content": "Hello."}]}
    # Raw is the transcript caitool generate --format raw asks with.
    assert render.prompt_completion(example.prompt, example.response, "raw") == {
        "prompt": "Human: Hi\n\nAssistant:", "completion": " Hello."}


def test_preference_formats_and_hard_labels():
    explicit = {"prompt": "q", "chosen": [{"role": "assistant", "content": "good"}],
                "rejected": "bad", "p_chosen": 0.8, "margin": 1}
    assert schema.check_preference(explicit) is None
    ex = schema.preference_example(explicit)
    assert (ex.chosen, ex.rejected, ex.p_chosen, ex.margin) == ("good", "bad", 0.8, 1.0)
    implicit = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
                "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}
    assert schema.check_preference(implicit) is None
    ex = schema.preference_example(implicit)
    assert ex.prompt == [{"role": "user", "content": "q"}] and ex.chosen == "good"
    pairs = [schema.PreferenceExample([], "a", "b", 0.3), schema.PreferenceExample([], "c", "d", 0.5),
             schema.PreferenceExample([], "e", "f", None)]
    hard = data.hard_pairs("t", pairs)
    # p < 0.5 means the other answer is preferred; the tie is left out.
    assert [(p.chosen, p.rejected) for p in hard] == [("b", "a"), ("e", "f")]
    with pytest.raises(CaitoolError, match="every pair is a tie"):
        data.hard_pairs("t", [pairs[1]])


def test_heldout_split_keeps_a_prompt_on_one_side():
    examples = [schema.PreferenceExample([{"role": "user", "content": f"q{i % 10}"}], "a", "b")
                for i in range(40)]
    train, held = data.split_heldout(examples, 0.2, seed=1)
    assert len(held) == 8 and len(train) == 32
    assert not {e.key for e in train} & {e.key for e in held}


def test_heldout_split_by_file_gives_every_file_its_share():
    def prompts(prefix: str, n: int) -> list[schema.PreferenceExample]:
        return [schema.PreferenceExample([{"role": "user", "content": f"{prefix}{i % n}"}], "a", "b")
                for i in range(2 * n)]

    big, small, shared = prompts("h", 20), prompts("q", 5), prompts("h", 5)
    train, held = data.split_heldout_groups([big, small], 0.2, seed=1)
    assert [len(h) for h in held] == [8, 2] and [len(t) for t in train] == [32, 8]
    # One file alone is split exactly as before.
    assert data.split_heldout(big, 0.2, seed=1)[1] == data.split_heldout_groups([big], 0.2, 1)[1][0]
    # A prompt in two files is on the same side in both.
    train, held = data.split_heldout_groups([big, shared], 0.5, seed=2)
    held_keys = {e.key for group in held for e in group}
    assert held_keys and not held_keys & {e.key for group in train for e in group}
    assert data.split_heldout_groups([big, small], 0, seed=1)[1] == [[], []]


def test_sources_are_read_file_by_file(tmp_path, capsys):
    a, b, empty = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "e.jsonl"
    a.write_text('{"prompt": "x"}\n{"prompt": "y"}\n')
    b.write_text('{"prompt": "z"}\n')
    empty.write_text("")
    sources = data.read_sources("t", [str(a), str(empty), str(b)], schema.check_prompt)
    assert [(s.name, len(s.records)) for s in sources] == [(str(a), 2), (str(empty), 0), (str(b), 1)]
    assert f"{empty}: no records in it" in capsys.readouterr().err
    assert [r["prompt"] for r in data.read_records("t", [str(a), str(b)], schema.check_prompt)] == \
        ["x", "y", "z"]
    with pytest.raises(CaitoolError, match="no training examples"):
        data.read_sources("t", [str(empty)], schema.check_prompt)
    # The same file twice keeps both counts; the note for people names every file.
    table = data.by_file(["a", "b", "a"], pairs=[3, 2, 1], heldout_pairs=[1, 0, 0])
    assert table == {"a": {"pairs": 3, "heldout_pairs": 1}, "b": {"pairs": 2, "heldout_pairs": 0},
                     "a (3)": {"pairs": 1, "heldout_pairs": 0}}
    assert data.describe(table).startswith("a: 3 pairs, 1 held out; b: 2 pairs, 0 held out; a (3)")


def test_hard_pairs_by_file_count_ties_together(capsys):
    tie, flipped = schema.PreferenceExample([], "a", "b", 0.5), schema.PreferenceExample([], "c", "d", 0.2)
    groups = data.hard_pair_groups("t", [[tie, flipped], [tie]])
    assert [[(p.chosen, p.rejected) for p in g] for g in groups] == [[("d", "c")], []]
    assert "left out 2 tied pair(s)" in capsys.readouterr().err


def test_pairs_that_teach_nothing_and_null_labels_are_counted_once_with_the_first_line(
        tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "q1", "chosen": "Kind.", "rejected": "Rude."}\n'
        '{"prompt": "q2", "chosen": "Same.", "rejected": "Same."}\n'
        '{"prompt": "q3", "chosen": "Kind.", "rejected": "Rude.", "p_chosen": null}\n'
        '{"prompt": "q4", "chosen": "Also.", "rejected": "Also. ", "p_chosen": null}\n')
    data.note_preferences("t", data.read_sources("t", [str(path)], schema.check_preference))
    err = capsys.readouterr().err
    assert f"2 pair(s) have the same text chosen and rejected (the first at {path}:2)" in err
    assert f"2 pair(s) have 'p_chosen': null (the first at {path}:3)" in err
    assert len(err.strip().splitlines()) == 2
    path.write_text('{"prompt": "q1", "chosen": "Kind.", "rejected": "Rude.", "p_chosen": 0.9}\n')
    data.note_preferences("t", data.read_sources("t", [str(path)], schema.check_preference))
    assert capsys.readouterr().err == ""


def test_sft_examples_cut_by_max_length_are_counted(tiny_model, capsys):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    question = [{"role": "user", "content": "Q?"}]
    short = schema.SFTExample(question, "A.")
    long = schema.SFTExample(question, "A long answer, " * 20)
    prompt = len(render.policy_prompt_ids(tokenizer, question, "raw"))
    whole = prompt + len(render.reply_ids(tokenizer, short.response, "raw"))
    sft.warn_cut("t", tokenizer, [short, long, long], "raw", whole)
    assert f"2 of 3 example(s) longer than --max-length {whole} tokens were cut" in \
        capsys.readouterr().err
    # A prompt that fills max_length leaves no reply: left out (said elsewhere), not cut.
    sft.warn_cut("t", tokenizer, [long], "raw", prompt)
    sft.warn_cut("t", tokenizer, [short, long], "raw", None)
    assert capsys.readouterr().err == ""


# -- config --------------------------------------------------------------------------------


def sft_settings(arguments: list[str]) -> args.Settings:
    (train_flags,), asked = args.parse((TrainFlags,), sft.config_class,
                                       ["-m", "m", "-o", "o", *arguments])
    return sft.configure(train_flags, asked)


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\nnum_train_epochs: 2\nwarmup_steps: 3\n"
                    "lora:\n  r: 4\n  target_modules: [q_proj]\n")
    settings = sft_settings(["--config", str(path), "--learning-rate", "0.01"])
    config = settings.args
    assert config.learning_rate == 0.01  # the flag wins over the file
    assert config.num_train_epochs == 2 and config.warmup_steps == 3
    assert config.completion_only_loss is True and config.report_to in ([], "none", ["none"])
    assert settings.lora["r"] == 4 and settings.lora["lora_alpha"] == 32
    lora = args.lora_config(settings.lora, "CAUSAL_LM")
    assert lora.r == 4 and set(lora.target_modules) == {"q_proj"}
    settings = sft_settings(["--config", str(path), "--lora-dropout", "0", "--lora-alpha", "8"])
    assert settings.lora["r"] == 4 and settings.lora["lora_alpha"] == 8
    assert settings.lora["lora_dropout"] == 0.0  # the flag wins over the default
    assert sft_settings(["--lora"]).lora["lora_dropout"] == 0.05
    path.write_text("output_dir: x\n")
    with pytest.raises(CaitoolError, match="-o/--output"):
        sft_settings(["--config", str(path)])
    path.write_text("- a list\n")
    with pytest.raises(CaitoolError, match="expected a mapping"):
        sft_settings(["--config", str(path)])


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
