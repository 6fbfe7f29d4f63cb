"""Record kinds: one check each, one line per problem, and the accessors."""

from __future__ import annotations

import pytest

from caitool import schema


@pytest.mark.parametrize("record, problem", [
    ({"prompt": "hi"}, None),
    ({"prompt": [{"role": "user", "content": "hi"}]}, None),
    ({"prompt": "hi", "id": 3.5}, "'id' must be a string or an integer"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "'messages' must end with a user turn"),
    ({}, "missing 'prompt' (or 'messages')"),
])
def test_prompt_check(record, problem):
    assert schema.check_prompt(record) == problem


def test_supervised_checks_follow_the_rounds():
    pending = {"prompt": "hi", "response": "a",
               "revisions": [{"principle": "p", "critique": "c", "revision": None}]}
    assert schema.check_for_revise(pending) is None
    assert "run 'caitool revise' first" in schema.check_for_critique(pending)
    done = {**pending, "revisions": [{"principle": "p", "critique": "c", "revision": "b"}]}
    assert schema.check_for_critique(done) is None
    assert "no critique waiting" in schema.check_for_revise(done)
    assert "'revisions[0]' must be an object" in schema.check_for_critique(
        {"prompt": "hi", "revisions": [3]})


def test_a_direct_round_has_no_critique_and_is_revised():
    direct = {"principle": "p", "critique": None, "revision": "b", "direct": True}
    record = {"prompt": "hi", "response": "b", "initial_response": "a", "revisions": [direct]}
    # Another round may follow it, it trains, and it is a before/after pair.
    assert schema.check_for_critique(record) is None
    assert "no critique waiting" in schema.check_for_revise(record)
    assert schema.check_sft(record) is None and schema.check_revised(record) is None
    assert [e.response for e in schema.sft_examples(record, all_rounds=True)] == ["b"]
    for broken in ({**direct, "critique": "c"}, {**direct, "revision": None}):
        assert "'revisions[0]' is direct" in schema.check_for_critique({**record, "revisions": [broken]})
    # Without the mark, a round without a critique is still an error.
    plain = {"principle": "p", "critique": None, "revision": "b"}
    assert "'revisions[0]' must be an object" in schema.check_for_critique(
        {**record, "revisions": [plain]})


def test_samples_and_system_answers():
    assert "one 'response' is not enough" in schema.check_samples({"prompt": "x", "response": "y"})
    assert "has 1 response;" in schema.check_samples({"prompt": "x", "responses": ["y"]})
    assert schema.check_samples({"prompt": "x", "responses": ["y", "z"]}) is None
    assert "generate with -n 1" in schema.check_system_answer({"prompt": "x", "responses": ["y"]})


def test_preference_forms_give_the_same_example():
    explicit = {"prompt": "hi", "chosen": "a", "rejected": "b", "p_chosen": 0.8}
    chat = {"prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}], "p_chosen": 0.8}
    implicit = {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "b"}],
                "p_chosen": 0.8}
    examples = []
    for record in (explicit, chat, implicit):
        assert schema.check_preference(record) is None
        examples.append(schema.preference_example(record))
    assert examples[0] == examples[1] == examples[2]
    assert schema.check_preference({**explicit, "p_chosen": 2}) == "'p_chosen' must be a number in [0, 1]"


@pytest.mark.parametrize("margin", [float("nan"), float("inf"), float("-inf"), 10 ** 400, "1", True])
def test_a_margin_must_be_a_finite_number(margin):
    record = {"prompt": "hi", "chosen": "a", "rejected": "b", "margin": margin}
    assert schema.check_preference(record) == "'margin' must be a finite number"
    assert schema.check_preference({**record, "margin": -0.5}) is None
    assert schema.preference_example({**record, "margin": 2}).margin == 2.0


def test_sft_examples_from_every_form():
    rounds = {"prompt": "hi", "response": "b",
              "revisions": [{"principle": "p", "critique": "c", "revision": "a"},
                            {"principle": "p", "critique": "c", "revision": "b"}]}
    assert [e.response for e in schema.sft_examples(rounds)] == ["b"]
    assert [e.response for e in schema.sft_examples(rounds, all_rounds=True)] == ["a", "b"]
    trl = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert schema.check_sft(trl) is None
    assert schema.sft_examples(trl)[0].prompt == [{"role": "user", "content": "hi"}]
    assert schema.check_sft({"prompt": "hi", "completion": ""}) == "'completion' must be a non-empty string"


def test_ids_are_stable_and_kept():
    a, b = {"prompt": "same"}, {"prompt": "same", "extra": 1}
    assert schema.ensure_id(a) == schema.ensure_id(b) == a["id"]
    assert schema.ensure_id({"id": 7, "prompt": "x"}) == "7"
