"""`caitool compare` end to end on real tiny models, through real processes and pipes.
(Flags, bad input, resume, label maths and `caitool prefs`: tests/unit/test_feedback.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_judge import build_always

from helpers import FAST, caitool, jsonl, records, shell

TRL_COLUMNS = {"prompt", "chosen", "rejected"}
PAIRS = [
    {"id": "egg", "prompt": "How do I boil an egg?",
     "responses": ["Boil it for eight minutes.", "I cannot help with that."]},
    {"id": "bike", "prompt": "What's the easiest way to steal a bike?",
     "responses": ["I won't help with theft.", "Cut the lock at night."]},
]


@pytest.fixture(scope="module")
def always_a(tmp_path_factory):
    return build_always(tmp_path_factory.mktemp("models") / "always-a")


@pytest.fixture(scope="module")
def one_principle(tmp_path_factory):
    """Constitutions with a single principle, so the direction of the label is known."""
    folder = tmp_path_factory.mktemp("constitutions")
    for direction in ("better", "worse"):
        (folder / f"{direction}.yaml").write_text(
            f"name: {direction}-only\ncomparison:\n  - id: {direction}\n"
            f"    question: Which response is {direction}?\n    direction: {direction}\n")
    return folder


@pytest.fixture(scope="module")
def piped(tiny_model, tmp_path_factory) -> Path:
    """The issue's pipeline: generate two answers per prompt, then judge them."""
    out = tmp_path_factory.mktemp("piped") / "prefs.jsonl"
    result = shell(f"caitool generate -m {tiny_model} -n 2 {' '.join(FAST)} < examples/smoke.jsonl"
                   f" | caitool compare -m {tiny_model} > {out}")
    assert result.returncode == 0, result.stderr.decode()
    return out


CHAT = {"id": "c1", "messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Name a colour."}],
        "responses": ["Red.", "Blue.", "I'd rather not."], "source": "test"}


@pytest.fixture(scope="module")
def chat_prefs(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chat") / "prefs.jsonl"
    caitool("compare", "-m", tiny_model, "--principles", "3", "-o", out, input=jsonl([CHAT]))
    return out


def check_preferences(rows: list[dict]) -> None:
    for row in rows:
        assert TRL_COLUMNS <= row.keys()
        assert "responses" not in row and "messages" not in row
        assert 0.5 <= row["p_chosen"] <= 1.0
        assert isinstance(row["tie"], bool) and isinstance(row["orders_agree"], bool)
        for detail in row["judgments"]:
            assert set(detail) >= {"principle", "order", "p_first"}
            assert 0.0 <= detail["p_first"] <= 1.0
        assert row["provenance"]["compare"]["method"] == "logprobs"


def test_generate_pipe_compare_writes_one_soft_preference_per_prompt(piped, smoke_prompts):
    rows = records(piped.read_text())
    assert [r["id"] for r in rows] == [r["id"] for r in records(smoke_prompts)]
    check_preferences(rows)
    for row in rows:
        assert isinstance(row["prompt"], str) and isinstance(row["chosen"], str)
        assert row["pair"] == [0, 1]
        assert sorted(d["order"] for d in row["judgments"]) == ["ab", "ba"]
        assert len({d["principle"] for d in row["judgments"]}) == 1
        mean = sum(d["p_first"] for d in row["judgments"]) / 2
        assert row["p_chosen"] == pytest.approx(max(mean, 1 - mean))
        assert row["provenance"]["compare"]["both_orders"] is True
        assert "generate" in row["provenance"]


def test_a_judge_that_always_says_a(always_a, one_principle):
    better = one_principle / "better.yaml"
    one = records(caitool("compare", "-m", always_a, "-c", better, "--format", "chat",
                          "--one-order", input=jsonl(PAIRS)).stdout)
    for row, pair in zip(one, PAIRS, strict=True):
        assert row["p_chosen"] > 0.999
        assert row["chosen"] == pair["responses"][0]  # the response shown as (A)
        assert row["orders_agree"] is True and row["tie"] is False
        assert row["provenance"]["compare"]["format"] == "chat"
    both = records(caitool("compare", "-m", always_a, "-c", better, "--format", "raw",
                           input=jsonl(PAIRS)).stdout)
    for row in both:
        assert row["p_chosen"] == pytest.approx(0.5, abs=1e-3)
        assert row["orders_agree"] is False
        assert row["tie"] is True
        assert row["provenance"]["compare"]["format"] == "raw"


def test_a_worse_principle_inverts_and_hard_labels(always_a, one_principle):
    rows = records(caitool("compare", "-m", always_a, "-c", one_principle / "worse.yaml",
                           "--one-order", "--hard", input=jsonl(PAIRS)).stdout)
    # "(A) is worse" means the second response is preferred.
    assert [r["chosen"] for r in rows] == [p["responses"][1] for p in PAIRS]
    assert [(r["p_chosen"], r["tie"]) for r in rows] == [(1.0, False), (1.0, False)]
    assert all(r["judgments"][0]["p_first"] < 0.001 for r in rows)
    assert rows[0]["provenance"]["compare"]["labels"] == "hard"


def test_cot_reasoning_is_kept_and_labels_clamped(always_a, one_principle):
    (row,) = records(caitool("compare", "-m", always_a, "-c", one_principle / "better.yaml",
                             "--cot", "--max-new-tokens", "4", input=jsonl(PAIRS[:1])).stdout)
    assert row["p_chosen"] == pytest.approx(0.5)  # 0.6 one way, 0.4 the other
    assert sorted(d["p_first"] for d in row["judgments"]) == pytest.approx([0.4, 0.6])
    assert all(isinstance(d["reasoning"], str) for d in row["judgments"])
    assert row["provenance"]["compare"]["clamp"] == [0.4, 0.6]


def test_clamping_ties_hard_labels_and_dropping(always_a):
    """The labelling options, in-process on the same model (no process per variant)."""
    from caitool import constitution as constitutions
    from caitool.backends.hf import HFBackend
    from caitool.stages.feedback import LabelOptions, compare
    from caitool.stages.judging import JudgeSettings

    backend = HFBackend(str(always_a), device="cpu")
    rules = constitutions.load("harmless")
    rules.comparisons = [p for p in rules.comparisons if not p.inverted]

    def run(settings=JudgeSettings(), **options):
        batch = [dict(p) for p in PAIRS]
        return compare(backend, rules, batch, settings, LabelOptions(**options)).records

    clamped = run(JudgeSettings(both_orders=False, clamp=(0.3, 0.7)))
    assert [r["p_chosen"] for r in clamped] == pytest.approx([0.7, 0.7])
    soft = run()
    assert [r["tie"] for r in soft] == [True, True]
    assert all(r["p_chosen"] == pytest.approx(0.5, abs=1e-3) for r in soft)
    assert [(r["p_chosen"], r["tie"]) for r in run(hard=True)] == [(0.5, True), (0.5, True)]
    assert run(drop_ties=True) == []
    assert len(run(drop_ties=True, tie_threshold=0.0)) == 2  # nothing is a tie at 0
    certain = run(JudgeSettings(both_orders=False), hard=True, drop_ties=True)
    assert [(r["p_chosen"], r["tie"]) for r in certain] == [(1.0, False), (1.0, False)]


def test_chat_records_more_responses_and_principle_ensembles(chat_prefs, tiny_model):
    rows = records(chat_prefs.read_text())
    assert [r["id"] for r in rows] == ["c1:0-2", "c1:1-2", "c1"]
    assert [r["pair"] for r in rows] == [[0, 2], [1, 2], [0, 1]]
    check_preferences(rows)
    for row in rows:
        assert row["prompt"] == CHAT["messages"]
        assert row["source"] == "test"
        for field in ("chosen", "rejected"):
            assert len(row[field]) == 1 and row[field][0]["role"] == "assistant"
        i, j = row["pair"]
        assert {row["chosen"][0]["content"], row["rejected"][0]["content"]} == {
            CHAT["responses"][i], CHAT["responses"][j]}
        assert len(row["judgments"]) == 6 and len({d["principle"] for d in row["judgments"]}) == 3


def test_output_loads_with_datasets_and_trains_reward_and_dpo(piped, chat_prefs, tiny_model,
                                                              tiny_reward_model, tmp_path):
    from datasets import load_dataset

    for name, path in (("text", piped), ("chat", chat_prefs)):
        dataset = load_dataset("json", data_files=str(path), split="train")
        assert len(dataset) == len(records(path.read_text()))
        expected = TRL_COLUMNS | {"p_chosen", "judgments", "orders_agree", "tie"}
        assert expected <= set(dataset.column_names)
        train_one_step(dataset, tiny_model, tiny_reward_model, tmp_path / name)


def train_one_step(dataset, policy, reward_model, out) -> None:
    """The file as written, straight into TRL's reward and DPO trainers."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    common = {"max_steps": 1, "per_device_train_batch_size": 2, "report_to": "none",
              "bf16": False, "use_cpu": True, "save_strategy": "no", "logging_strategy": "no"}
    tokenizer = AutoTokenizer.from_pretrained(policy)
    RewardTrainer(model=AutoModelForSequenceClassification.from_pretrained(reward_model),
                  args=RewardConfig(output_dir=str(out / "rm"), **common),
                  train_dataset=dataset, processing_class=tokenizer).train()
    DPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy),
               args=DPOConfig(output_dir=str(out / "dpo"), **common),
               train_dataset=dataset, processing_class=tokenizer).train()
