"""caitool eval end to end: input errors, and real judging by the tiny model."""

from __future__ import annotations

import json

import pytest

from helpers import EXAMPLES, caitool, jsonl, records

PROMPTS = records((EXAMPLES / "smoke.jsonl").read_text())


def system(tmp_path, name: str, answer, prompts=PROMPTS) -> str:
    """A file of responses to the smoke prompts; ``answer`` maps a prompt record to text."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text(jsonl([{**p, "response": answer(p)} for p in prompts]))
    return str(path)


def refusing(prompt):
    return "I won't help with that, but I can suggest a safer way to handle it."


def complying(prompt):
    return f"Sure. Here is exactly how: {prompt['prompt'].lower()} Step one is easy."


# -- input errors (no judging needed) ------------------------------------------------------


def test_needs_two_files(tmp_path):
    result = caitool("eval", "-m", "unused", system(tmp_path, "a", refusing), check=False)
    assert result.returncode == 1
    assert "at least two files" in result.stderr.decode()


def test_names_must_match_the_files(tmp_path):
    a, b = system(tmp_path, "a", refusing), system(tmp_path, "b", complying)
    result = caitool("eval", "-m", "unused", a, b, "--names", "only-one", check=False)
    assert result.returncode == 1 and "--names needs 2" in result.stderr.decode()
    result = caitool("eval", "-m", "unused", a, b, "--names", "x,x", check=False)
    assert "--names must be unique" in result.stderr.decode()
    result = caitool("eval", "-m", "unused", a, b, "--reference", "c", check=False)
    assert "--reference 'c' is not one of: a, b" in result.stderr.decode()


def test_bad_system_files_name_the_file_and_line(tmp_path):
    good = system(tmp_path, "good", refusing)
    duplicate = tmp_path / "dup.jsonl"
    duplicate.write_text(jsonl([{**PROMPTS[0], "response": "x"}, {**PROMPTS[0], "response": "y"}]))
    missing = tmp_path / "missing.jsonl"
    missing.write_text(jsonl([{**PROMPTS[0], "response": "x"}, PROMPTS[1]]))
    several = tmp_path / "several.jsonl"
    several.write_text(jsonl([{**PROMPTS[0], "responses": ["x", "y"]}]))
    for path, problem in ((duplicate, "2: duplicate id 'smoke-1'"),
                          (missing, "2: missing 'response'"),
                          (several, "1: has 'responses' (several samples)")):
        result = caitool("eval", "-m", "unused", good, path, check=False)
        stderr = result.stderr.decode()
        assert result.returncode == 1, stderr
        assert f"caitool eval: {path}:{problem}" in stderr
        assert "Traceback" not in stderr


def test_the_same_id_must_have_the_same_prompt(tmp_path):
    a = system(tmp_path, "a", refusing)
    other = tmp_path / "other.jsonl"
    other.write_text(jsonl([{"id": "smoke-1", "prompt": "Something else", "response": "x"}]))
    result = caitool("eval", "-m", "unused", a, other, check=False)
    assert "id 'smoke-1' has different prompts" in result.stderr.decode()
    disjoint = tmp_path / "disjoint.jsonl"
    disjoint.write_text(jsonl([{"id": "new", "prompt": "Hi", "response": "x"}]))
    result = caitool("eval", "-m", "unused", a, disjoint, check=False)
    assert "share no record ids" in result.stderr.decode()


def test_bad_flag_values_are_one_line_errors(tmp_path):
    a, b = system(tmp_path, "a", refusing), system(tmp_path, "b", complying)
    for flags, message in ((["--principles", "0"], "--principles must be at least 1"),
                           (["--bootstrap", "-1"], "--bootstrap must be 0 or more"),
                           (["--only", "honesty"],
                            "--only must be harmlessness, helpfulness, evasiveness"),
                           (["--only", "helpfulness", "--plot", "x.png"],
                            "--plot needs harmlessness and helpfulness"),
                           (["--harmless-constitution", "nope"], "unknown constitution 'nope'")):
        result = caitool("eval", "-m", "unused", a, b, *flags, check=False)
        assert result.returncode != 0
        assert message in result.stderr.decode()


def test_the_plot_and_tables_show_every_system(tmp_path):
    import io

    from rich.console import Console

    from caitool.stages.evaluate import report as evalreport
    from caitool.stages.evaluate.statistics import Outcome, summarize

    def judged(p_ab, p_ac, p_bc):
        return [Outcome(f"{pair}{i}", a, b, p) for i in range(20)
                for pair, a, b, p in (("ab", "base", "sft", p_ab), ("ac", "base", "rl", p_ac),
                                      ("bc", "sft", "rl", p_bc))]

    summary = summarize(["base", "sft", "rl"], {"harmlessness": judged(0.3, 0.1, 0.3),
                                                "helpfulness": judged(0.4, 0.45, 0.55)},
                        samples=50)
    path = tmp_path / "elo.png"
    evalreport.plot(summary, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    buffer = io.StringIO()
    evalreport.print_tables(Console(file=buffer, width=120), summary,
                            ["harmlessness", "helpfulness"])
    text = buffer.getvalue()
    assert "Win rates" in text and "Elo (reference base = 0)" in text
    assert all(name in text for name in ("base", "sft", "rl"))
    harmless = summary["elo"]["harmlessness"]
    assert harmless["rl"]["elo"] > harmless["sft"]["elo"] > harmless["base"]["elo"] == 0


# -- judging with the tiny model -----------------------------------------------------------


def test_identical_systems_win_half_the_time(tmp_path, tiny_model):
    prompts = PROMPTS[:4]
    a = system(tmp_path, "a", complying, prompts)
    result = caitool("eval", "-m", tiny_model, a, a, "--names", "left,right",
                     "--bootstrap", "200")
    summary = json.loads(result.stdout)
    assert summary["systems"] == ["left", "right"]
    [pair] = summary["pairs"]
    assert (pair["a"], pair["b"]) == ("left", "right")
    for dimension in ("harmlessness", "helpfulness", "evasiveness"):
        outcome = pair[dimension]
        assert outcome["n"] == len(prompts)
        # Both-order judging of identical responses is a tie whatever the judge prefers.
        assert outcome["win_rate"] == pytest.approx(0.5, abs=0.01)
        low, high = outcome["ci"]
        assert low - 1e-3 <= 0.5 <= high + 1e-3
        assert outcome["per_principle"]
        assert summary["elo"][dimension]["right"]["elo"] == pytest.approx(0.0, abs=10)
    assert summary["elo"]["reference"] == "left"
    assert summary["judge"]["both_orders"] is True
    assert "Win rates" in result.stderr.decode()


def test_three_systems_get_elo_scores_a_plot_and_per_prompt_judgments(tmp_path, tiny_model):
    prompts = PROMPTS[:3]
    files = [system(tmp_path, "refuse", refusing, prompts),
             system(tmp_path, "comply", complying, prompts),
             system(tmp_path, "short", lambda p: "Maybe.", prompts)]
    plot, judgments = tmp_path / "elo.png", tmp_path / "judgments.jsonl"
    result = caitool("eval", "-m", tiny_model, *files, "--principles", "2", "--bootstrap", "100",
                     "--plot", plot, "--judgments", judgments, "--reference", "comply")
    summary = json.loads(result.stdout)
    assert summary["systems"] == ["refuse", "comply", "short"]
    assert [(p["a"], p["b"]) for p in summary["pairs"]] == [
        ("refuse", "comply"), ("refuse", "short"), ("comply", "short")]
    for pair in summary["pairs"]:
        for dimension in ("harmlessness", "helpfulness", "evasiveness"):
            outcome = pair[dimension]
            assert 0.0 <= outcome["ci"][0] <= outcome["win_rate"] <= outcome["ci"][1] <= 1.0
            assert outcome["wins"] + outcome["losses"] + outcome["ties"] == len(prompts)
    for dimension in ("harmlessness", "helpfulness", "evasiveness"):
        scores = summary["elo"][dimension]
        assert set(scores) == {"refuse", "comply", "short"}
        assert scores["comply"] == {"elo": 0.0, "ci": [0.0, 0.0]}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = records(judgments.read_text())
    assert len(lines) == 3 * len(prompts) * 3  # pairs x prompts x dimensions
    assert {line["dimension"] for line in lines} == {"harmlessness", "helpfulness", "evasiveness"}
    assert all(0.0 <= line["p_a"] <= 1.0 for line in lines)
