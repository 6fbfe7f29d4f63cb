
import pytest

from caitool import constitution
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
    assert len(c.critique_examples) == 2
    assert c.critique_examples[1].revision == "Placeholder revision two."
    assert [p.direction for p in c.comparisons] == ["better", "worse", "better"]
    assert c.comparisons[0].question == "Which reply is kinder and safer?"
    assert c.comparison_examples[0].better == "A careful placeholder reply."


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
