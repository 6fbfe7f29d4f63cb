"""The supervised stage end to end on the tiny model, through real pipes."""


from caitool import constitution
from helpers import EXAMPLES, FAST, MINI, caitool, jsonl, records, shell


def test_generate_one_and_many(tiny_model, smoke_prompts):
    one = records(caitool("generate", "-m", tiny_model, *FAST, input=smoke_prompts).stdout)
    assert [r["id"] for r in one] == [f"smoke-{i}" for i in range(1, 9)]
    assert all(isinstance(r["response"], str) and "responses" not in r for r in one)
    many = records(caitool("generate", "-m", tiny_model, "-n", "3", *FAST, input=smoke_prompts).stdout)
    assert all(len(r["responses"]) == 3 and "response" not in r for r in many)
    assert many[0]["provenance"]["generate"]["n"] == 3


def test_two_rounds_by_piping(tiny_model):
    m = f"-m {tiny_model} --max-new-tokens 8 -c harmless"
    result = shell(f"caitool critique {m} < {EXAMPLES}/smoke.jsonl | caitool revise {m} "
                   f"| caitool critique {m} | caitool revise {m}")
    assert result.returncode == 0, result.stderr.decode()
    out = records(result.stdout)
    harmless = {p.id for p in constitution.load("harmless").principles}
    assert len(out) == 8
    for record in out:
        assert len(record["revisions"]) == 2
        assert all(r["principle"] in harmless for r in record["revisions"])
        assert all(isinstance(r["critique"], str) and isinstance(r["revision"], str)
                   for r in record["revisions"])
        assert record["response"] == record["revisions"][-1]["revision"]
        assert isinstance(record["initial_response"], str)
        assert set(record["provenance"]) == {"generate", "critique", "revise"}
        assert record["provenance"]["critique"]["constitution"] == "harmless"
    # The same two rounds in one process (the model loaded once): the same records, sampled
    # at temperature 1, byte for byte.
    one_process = shell(f"caitool revise --rounds 2 {m} < {EXAMPLES}/smoke.jsonl")
    assert one_process.returncode == 0, one_process.stderr.decode()
    assert records(one_process.stdout) == out


def test_one_round_from_the_readme(tiny_model):
    """The README's first pipeline, on more records than one batch."""
    result = shell(f"head -n 40 examples/red_team.jsonl | caitool critique -m {tiny_model} -c {MINI}"
                   f" --max-new-tokens 8 | caitool revise -m {tiny_model} -c {MINI} --max-new-tokens 8")
    assert result.returncode == 0, result.stderr.decode()
    out = records(result.stdout)
    assert len(out) == 40
    assert len({r["id"] for r in out}) == 40
    assert all(len(r["revisions"]) == 1 and "initial_response" in r and "response" in r for r in out)


def test_chat_messages_and_raw_format(tiny_model):
    rows = [{"id": "c1", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Hello?"}]},
            {"id": "c2", "prompt": "What is two plus two?"}]
    for fmt in ("chat", "raw"):
        out = records(shell(f"caitool critique -m {tiny_model} -c {MINI} --format {fmt} "
                            f"--max-new-tokens 6 | caitool revise -m {tiny_model} -c {MINI} "
                            f"--format {fmt} --max-new-tokens 6",
                            input=jsonl(rows)).stdout)
        assert [r["id"] for r in out] == ["c1", "c2"]
        assert all(r["provenance"]["revise"]["format"] == fmt for r in out)
        assert out[0]["messages"] == rows[0]["messages"]


def test_seed_makes_runs_reproducible(tiny_model, smoke_prompts):
    runs = [caitool("critique", "-m", tiny_model, "-c", MINI, "--seed", seed, *FAST, input=smoke_prompts).stdout
            for seed in ("7", "7", "8")]
    assert runs[0] == runs[1]
    # Another seed samples other principles and other text.
    principles = [[r["revisions"][0]["principle"] for r in records(run)] for run in runs]
    texts = [[r["revisions"][0]["critique"] for r in records(run)] for run in runs]
    assert principles[0] != principles[2]
    assert texts[0] != texts[2]
