
import json
import logging
import re
import shutil
import time

import pytest

from caitool import constitution, render
from caitool.errors import CaitoolError
from helpers import DATA, caitool


def test_builtin_harmless_meets_the_paper_scale():
    c = constitution.load("harmless")
    assert len(c.principles) >= 12
    assert len(c.comparisons) >= 12
    assert len(c.critique_examples) >= 3
    assert len(c.comparison_examples) >= 1
    assert any(p.inverted for p in c.comparisons), "needs a 'worse' principle to exercise inversion"
    assert len({p.id for p in c.principles}) == len(c.principles)


def test_anthropic_directory_is_recognised_by_shape():
    c = constitution.load(str(DATA / "anthropic"))
    assert [p.id for p in c.principles] == ["harmful0", "harmful1"]
    assert c.principles[0].critique == "Point out anything hurtful in the last reply."
    assert c.principles[0].revision == "Rewrite the reply without anything hurtful."
    assert len(c.critique_examples) == 3
    assert c.critique_examples[1].revision == "Placeholder revision two."
    assert [p.direction for p in c.comparisons] == ["better", "worse", "better"]
    assert c.comparisons[0].question == "Which reply is kinder and safer?"
    assert c.comparison_examples[0].better == "A careful placeholder reply."


def test_anthropic_multi_turn_examples_keep_every_turn():
    c = constitution.load(str(DATA / "anthropic"))
    three = c.critique_examples[2]
    assert [m["content"] for m in three.messages()] == [
        "Placeholder turn A?", "Placeholder reply A.", "Placeholder turn B?",
        "Placeholder reply B.", "Placeholder turn C?"]
    assert three.response == "Placeholder answer three."
    raw, _ = render.critique_prompt(c, [{"role": "user", "content": "Q?"}], "R.",
                                    c.principles[0], "raw")
    # Every example is its own "\n\nHuman:" transcript, every turn kept, as the file has them.
    examples = json.loads((DATA / "anthropic" / "CritiqueRevisionFewShotPrompts.json").read_text())
    assert raw.text.startswith("".join(examples))
    assert raw.text.endswith("".join(examples)[-40:] + "\n\nHuman: Q?\n\nAssistant: R.\n\n"
                             "CritiqueRequest: Point out anything hurtful in the last reply.\n\n"
                             "Critique:")
    multi = c.comparison_examples[1]
    assert multi.history == (("user", "Placeholder first turn?"),
                             ("assistant", "Placeholder first reply."))


def test_anthropic_comparison_examples_get_sampled_principles_not_an_invented_question():
    c = constitution.load(str(DATA / "anthropic"))
    questions = {p.question: p.direction for p in c.comparisons}
    for example in c.comparison_examples:
        assert questions[example.question] == example.direction
    # Seeded: the same principles every time the directory loads.
    again = constitution.load(str(DATA / "anthropic"))
    assert again.comparison_examples == c.comparison_examples


def test_anthropic_cot_file_is_loaded_and_used_for_cot():
    c = constitution.load(str(DATA / "anthropic"))
    assert len(c.worked_comparisons) == 2
    worked = c.worked_comparisons[0].text
    assert "{}" not in worked
    assert any(f"\n\n\n{p.question} Options:\n (A) [[[" in worked for p in c.comparisons)
    ask = [{"role": "user", "content": "Q?"}]
    prompt = render.comparison_prompt(c, ask, c.comparisons[0], "one", "two", "raw", cot=True)
    assert prompt.text.startswith(worked + c.worked_comparisons[1].text + "\n\nHuman: Consider")
    assert prompt.text.endswith("\n\nAssistant: Let's think step by step:")
    chat = render.comparison_prompt(c, ask, c.comparisons[0], "one", "two", "chat", cot=True)
    turns = chat.message_dicts()
    assert [m["role"] for m in turns] == ["user", "assistant"] * 2 + ["user"]
    assert turns[1]["content"].startswith("Let's think step by step: Placeholder reasoning")
    assert turns[1]["content"].endswith("The answer is: (A)")
    # Without --cot, the plain few-shot examples are used instead.
    plain = render.comparison_prompt(c, ask, c.comparisons[0], "one", "two", "raw")
    assert "step by step" not in plain.text and "careful placeholder reply" in plain.text


def test_unrecognised_json_in_a_constitution_directory_is_a_warning(tmp_path, caplog):
    directory = tmp_path / "released"
    shutil.copytree(DATA / "anthropic", directory)
    (directory / "Notes.json").write_text('{"author": "someone"}')
    with caplog.at_level(logging.WARNING):
        c = constitution.load(str(directory))
    assert len(c.principles) == 2
    assert any("Notes.json" in r.getMessage() for r in caplog.records)
    result = caitool("constitution", "validate", directory, check=False)
    assert result.returncode == 0
    assert "Notes.json is not a file caitool recognises" in result.stderr.decode()


def test_hf_recipe_json():
    c = constitution.load(str(DATA / "hf_recipe.json"))
    assert len(c.principles) == 2
    assert c.principles[1].revision == "Rewrite the reply lawfully."
    assert c.critique_examples[0].critique == "Placeholder critique"


@pytest.mark.parametrize("name", ["langchain.json", "langchain.yaml"])
def test_langchain_principles(name):
    c = constitution.load(str(DATA / name))
    assert [p.id for p in c.principles] == ["kind", "lawful"]
    assert c.principles[0].critique == "Point out anything unkind."


@pytest.mark.parametrize("name, message", [
    ("bad_duplicate.yaml", "duplicate critique_revision id 'a'"),
    ("bad_direction.yaml", "direction must be 'better' or 'worse'"),
    ("bad_fewshot.yaml", "principle 'nope' is not a critique_revision id"),
    ("bad_syntax.yaml", "cannot parse"),
])
def test_malformed_constitutions_name_the_problem(name, message):
    with pytest.raises(CaitoolError, match=message):
        constitution.load(str(DATA / name))
    result = caitool("constitution", "validate", DATA / name, check=False)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_constitution_lists_builtins():
    result = caitool("critique", "-m", "x", "-c", "no-such-thing", input="", check=False)
    assert result.returncode == 1
    assert "unknown constitution 'no-such-thing'" in result.stderr.decode()
    assert "harmless" in result.stderr.decode()


def test_constitution_commands():
    assert "harmless" in caitool("constitution", "list").stdout.decode().split()
    shown = caitool("constitution", "show", DATA / "langchain.json").stdout.decode()
    assert "critique_revision:" in shown and "Point out anything unkind." in shown
    assert "harmless: ok" in caitool("constitution", "validate", "harmless").stdout.decode()


def test_show_round_trips_through_the_yaml_loader(tmp_path):
    out = tmp_path / "converted.yaml"
    out.write_bytes(caitool("constitution", "show", DATA / "anthropic").stdout)
    again = constitution.load(str(out))
    original = constitution.load(str(DATA / "anthropic"))
    assert again.principles == original.principles
    assert again.comparisons == original.comparisons
    assert again.critique_examples == original.critique_examples
    assert again.comparison_examples == original.comparison_examples
    assert again.worked_comparisons == original.worked_comparisons


# -- damaged files: an error naming the file, never a file quietly left out ------------------

CRITIQUE = ("\n\nHuman: Q?\n\nAssistant: A.\n\nCritiqueRequest: Point out harm.\n\nCritique: C."
            "\n\nRevisionRequest: Remove it.\n\nRevision: R.")
PRINCIPLE = {"prompt": ["\n\nCritiqueRequest: Point out harm.\n\nCritique:"],
             "edit_request": "\n\nRevisionRequest: Remove it.\n\nRevision:"}


@pytest.mark.parametrize("name, content, message", [
    ("CritiqueRevisionInstructions.json", {"harmful0": PRINCIPLE, "harmful1": 5},
     "'harmful1' needs a 'prompt' list and 'edit_request'"),
    ("CritiqueRevisionInstructions.json", [1, 2],
     "expected critique/revision principles ({id: {prompt: [text], edit_request: text}}), got a list"),
    ("CritiqueRevisionInstructions.json", {}, "expected critique/revision principles"),
    ("RLMadisonInstructions.json", ["\nWhich is kinder? Options:", 7],
     "entry 1 must be a string ending in 'Options:'"),
    ("RLMadisonInstructions.json", '"Which is kinder? Options:"',
     "expected comparison principles (a list of strings ending in 'Options:'), got a string"),
    ("RLMadisonFewShotPrompts.json",
     [{"prompt": "\n\nHuman: Q?\n\nAssistant:", "corrects": " Good.", "incorrects": [" Bad."]}],
     "entry 0 needs a string 'prompt' and lists of strings 'corrects' and 'incorrects'"),
    ("RLMadisonPrecogFewShotPrompts.json", [{"prompt": "Question {} answer"}, {"prompt": 3}],
     "entry 1 needs a string 'prompt' with {} where the principle goes"),
    ("CritiqueRevisionFewShotPrompts.json", [CRITIQUE, "just some text"],
     "entry 1 is not a critique example"),
    ("CritiqueRevisionFewShotPrompts.json", None, "expected critique few-shot examples"),
    ("Extra.json", [CRITIQUE, 42], "entry 1 is not a critique example"),
    ("Extra.json", "{not json", "cannot parse"),
    ("Extra.json", "[" * 100_000 + "]" * 100_000, "cannot parse: nested too deeply"),
    ("Extra.json", "9" * 5000, "cannot parse: Exceeds the limit"),
])
def test_a_damaged_file_in_an_anthropic_directory_is_an_error_naming_it(tmp_path, name, content,
                                                                        message):
    directory = tmp_path / "released"
    shutil.copytree(DATA / "anthropic", directory)
    text = content if isinstance(content, str) else json.dumps(content)
    (directory / name).write_text(text)
    with pytest.raises(CaitoolError) as caught:
        constitution.load(str(directory))
    assert str(caught.value).startswith(f"constitution {directory / name}: ")
    assert message in str(caught.value)


def test_the_cli_names_the_damaged_file_in_one_line(tmp_path):
    directory = tmp_path / "released"
    shutil.copytree(DATA / "anthropic", directory)
    (directory / "RLMadisonInstructions.json").write_text('["\\nWhich is kinder? Options:", 7]')
    result = caitool("constitution", "validate", directory, check=False)
    err = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b"" and "Traceback" not in err
    assert err == (f"caitool constitution: constitution {directory}/RLMadisonInstructions.json: "
                   "entry 1 must be a string ending in 'Options:'\n")


@pytest.mark.parametrize("change, message", [
    ({"system_chat": 5}, "'system_chat' must be a list of conversations"),
    ({"system_chat": ["hello"]}, "system_chat[0] must be a list of messages"),
    ({"system_chat": [[{"role": "user", "content": "a"}, 3]]},
     "system_chat[0][1] must be a message {role, content} with string values"),
    ({"system_chat": [[{"role": "user", "content": 7}]]}, "system_chat[0][0] must be a message"),
    ({"constitutions": [{"critic": "x", "revision": ["y"]}]},
     "constitutions[0] needs a non-empty string 'revision'"),
    ({"constitutions": [5]}, "constitutions[0] must be a mapping"),
])
def test_wrong_typed_entries_of_a_hf_recipe_are_errors(tmp_path, change, message):
    recipe = {**json.loads((DATA / "hf_recipe.json").read_text()), **change}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    with pytest.raises(CaitoolError, match=re.escape(message)):
        constitution.load(str(path))


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefghijklmnop", "bcdefghijklmnop"[:levels - 1]):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + f"\ndescription: *{lines[-1][0]}\ncritique_revision: []\n"


@pytest.mark.parametrize("text, message", [
    (_alias_bomb(), "aliases expand it past 100,000 values; refused as an alias bomb"),
    ("a: &a [*a]\ncritique_revision: []\n", "an alias refers to a value that contains it"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_yaml_bombs_fail_fast_in_one_line(tmp_path, text, message):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.monotonic()
    result = caitool("constitution", "validate", path, check=False)
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"constitution {path}: cannot parse: {message}" in err
    assert time.monotonic() - started < 30


def test_anchors_and_aliases_of_ordinary_size_still_load(tmp_path):
    path = tmp_path / "aliased.yaml"
    path.write_text("critique_revision:\n"
                    "  - &p {id: a, critique: Point out harm., revision: Remove it.}\n"
                    "  - {id: b, critique: Point out harm., revision: Remove it.}\n"
                    "description: &d Kind.\nname: *d\n")
    c = constitution.load(str(path))
    assert [p.id for p in c.principles] == ["a", "b"] and c.name == "Kind."
