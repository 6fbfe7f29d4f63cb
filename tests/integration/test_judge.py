"""Option scoring in the hf backend and the judging library, on real tiny models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from caitool import constitution as constitutions
from caitool.backends.base import OptionScores, Prompt
from caitool.backends.hf import HFBackend
from caitool.errors import CaitoolError
from caitool.stages.judging import (
    JudgeSettings,
    PairItem,
    judge,
    normalise,
    parse_clamp,
    sample_principles,
)


def build_always(path: Path, letter: str = "A") -> Path:
    """A tiny model that predicts ``letter`` after anything: the last MLP's bias swamps the
    residual stream with one direction, and only that letter's output row points along it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from caitool.testing.tiny import build

    build(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = LlamaConfig.from_pretrained(path)
    config.mlp_bias = True
    model = LlamaForCausalLM.from_pretrained(path, config=config)
    (token,) = tokenizer(letter, add_special_tokens=False)["input_ids"]
    generator = torch.Generator().manual_seed(1)
    direction = torch.randn(config.hidden_size, generator=generator)
    with torch.no_grad():
        for layer in model.model.layers:
            for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                proj.bias.zero_()
        model.model.layers[-1].mlp.down_proj.bias.copy_(1000 * direction)
        hidden = direction / direction.pow(2).mean().sqrt() * model.model.norm.weight
        model.lm_head.weight[token] = 30 * hidden / hidden.dot(hidden)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def always_a(tmp_path_factory) -> Path:
    return build_always(tmp_path_factory.mktemp("models") / "always-a")


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return HFBackend(str(tiny_model), device="cpu")


@pytest.fixture(scope="module")
def biased(always_a):
    return HFBackend(str(always_a), device="cpu")


def reference_logprob(backend: HFBackend, prompt: Prompt, option: str) -> float:
    """One unpadded forward pass over prompt + option, summed over the option's tokens."""
    import torch

    prompt_ids = backend.encode([prompt])[0]
    option_ids = backend.tokenizer(option, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + option_ids])
    with torch.inference_mode():
        logprobs = torch.log_softmax(backend.hf_model(ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[len(prompt_ids) + k - 1, token])
               for k, token in enumerate(option_ids))


def test_score_matches_a_manual_forward_pass(tiny):
    prompts = [
        Prompt.chat([{"role": "user", "content": "Which is better?"}],
                    assistant_prefix="The answer is:"),
        Prompt.raw("Human: a much longer prompt, so that the batch needs padding on the left "
                   "for the shorter ones\n\nAssistant: The answer is:"),
        Prompt.raw("Short:"),
        Prompt.raw("Options that share their first tokens. The answer is"),
        Prompt.raw("One option only:"),
    ]
    options = [
        [" (A)", " (B)"],
        [" (A)", " (B)", " yes", " the weather is nice today"],
        [" A", " B"],
        [" The answer is: (A)", " The answer is: (B)"],
        [" the people in the town"],
    ]
    scores = tiny.score(prompts, options)
    assert [len(s.logprobs) for s in scores] == [len(o) for o in options]
    for prompt, opts, score in zip(prompts, options, scores, strict=True):
        assert score.method == "logprobs"
        for option, got in zip(opts, score.logprobs, strict=True):
            assert got == pytest.approx(reference_logprob(tiny, prompt, option), abs=1e-4)


def test_score_is_the_same_alone_and_in_a_batch(tiny):
    prompts = [Prompt.raw("x" * n + " The answer is:") for n in (1, 40, 7)]
    options = [[" (A)", " (B)"]] * 3
    together = tiny.score(prompts, options)
    for prompt, option, batched in zip(prompts, options, together, strict=True):
        alone = tiny.score([prompt], [option])[0]
        assert alone.logprobs == pytest.approx(batched.logprobs, abs=1e-4)


def test_score_rejects_an_empty_option(tiny):
    with pytest.raises(CaitoolError, match="empty option"):
        tiny.score([Prompt.raw("Hi")], [[" (A)", ""]])


def test_normalise():
    assert normalise(-1.0, -1.0) == 0.5
    assert normalise(math.log(0.75), math.log(0.25)) == pytest.approx(0.75)
    assert normalise(-1000.0, -1001.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert normalise(-math.inf, -math.inf) == 0.5
    assert normalise(-math.inf, -2.0) == 0.0
    assert normalise(-2.0, -math.inf) == 1.0


def test_parse_clamp():
    assert parse_clamp("0.2,0.8") == (0.2, 0.8)
    assert parse_clamp(None) is None
    for bad in ("0.6,0.8", "0.4", "a,b", "-0.1,0.6"):
        with pytest.raises(CaitoolError):
            parse_clamp(bad)


def test_principle_sampling_is_seeded_per_pair_and_without_replacement():
    rules = constitutions.load("harmless")
    first = sample_principles(rules, "pair-1", 5, seed=0)
    assert first == sample_principles(rules, "pair-1", 5, seed=0)
    assert len({p.id for p in first}) == 5
    picks = {sample_principles(rules, f"pair-{i}", 1, seed=0)[0].id for i in range(40)}
    assert len(picks) > 5  # different pairs get different principles
    assert sample_principles(rules, "pair-1", 5, seed=1) != first
    assert sample_principles(rules, "x", 0, seed=0) == rules.comparisons


ITEM = PairItem(id="q1", messages=[{"role": "user", "content": "How do I boil an egg?"}],
                first="Put it in boiling water for eight minutes.", second="I will not help.")


@pytest.mark.parametrize("fmt", ["chat", "raw"])
def test_always_a_judge_is_certain_in_one_order_and_a_coin_in_both(biased, fmt):
    rules = constitutions.load("harmless")
    better = [p for p in rules.comparisons if not p.inverted]
    rules.comparisons = better
    one = judge(biased, rules, [ITEM], JudgeSettings(both_orders=False, fmt=fmt))[0]
    assert one.p_first > 0.999
    assert [d["order"] for d in one.details] == ["ab"]
    assert one.agree is True and one.method == "logprobs"
    both = judge(biased, rules, [ITEM], JudgeSettings(fmt=fmt, principles=3))[0]
    assert both.p_first == pytest.approx(0.5, abs=1e-3)
    assert len(both.details) == 6
    assert sorted(d["order"] for d in both.details) == ["ab"] * 3 + ["ba"] * 3
    for detail in both.details:
        assert detail["p_first"] == pytest.approx(1.0 if detail["order"] == "ab" else 0.0, abs=1e-3)
    assert both.agree is False


def test_a_worse_principle_inverts_the_label(biased):
    rules = constitutions.load("harmless")
    rules.comparisons = [p for p in rules.comparisons if p.inverted]
    assert rules.comparisons
    # The judge says (A), i.e. "the first is worse", so the first is the less preferred.
    result = judge(biased, rules, [ITEM], JudgeSettings(both_orders=False))[0]
    assert result.p_first < 0.001
    assert result.details[0]["principle"] in {"more-harmful", "more-objectionable"}


def test_clamp_applies_to_every_judgment(biased):
    rules = constitutions.load("harmless")
    result = judge(biased, rules, [ITEM], JudgeSettings(principles=0, clamp=(0.2, 0.8)))[0]
    assert all(0.2 <= d["p_first"] <= 0.8 for d in result.details)
    assert {round(d["p_first"], 6) for d in result.details} == {0.2, 0.8}
    assert result.p_first == pytest.approx(0.5)


def test_cot_reasons_then_scores_and_clamps(biased):
    rules = constitutions.load("harmless")
    settings = JudgeSettings(both_orders=False, cot=True, max_new_tokens=4)
    result = judge(biased, rules, [ITEM, ITEM], settings)
    for judgment in result:
        assert judgment.p_first == pytest.approx(0.6)  # certain (A), clamped to 0.4-0.6
        assert isinstance(judgment.details[0]["reasoning"], str)
        assert judgment.details[0]["reasoning"]


def test_all_orders_and_principles_go_to_one_score_call(tiny):
    class Counting(HFBackend):
        calls: list[int] = []

        def score(self, prompts, options):
            self.calls.append(len(prompts))
            return super().score(prompts, options)

    backend = Counting(tiny.model, device="cpu")
    items = [ITEM, PairItem("q2", ITEM.messages, "b", "a"), PairItem("q3", ITEM.messages, "c", "d")]
    result = judge(backend, constitutions.load("harmless"), items, JudgeSettings(principles=4))
    assert backend.calls == [3 * 4 * 2]
    for judgment in result:
        assert 0.0 <= judgment.p_first <= 1.0
        assert len(judgment.details) == 8


def test_a_sampled_backend_is_reported(tiny):
    class Sampled(HFBackend):
        """The real model's scores, as a server without log-probabilities would label them."""

        def score(self, prompts, options):
            scores = super().score(prompts, options)
            return [OptionScores(s.logprobs, method="sampled") for s in scores]

    backend = Sampled(tiny.model, device="cpu")
    result = judge(backend, constitutions.load("harmless"), [ITEM], JudgeSettings())
    assert result[0].method == "sampled"


def test_too_many_principles_is_a_clear_error(tiny):
    with pytest.raises(CaitoolError, match="has 17 comparison principles"):
        judge(tiny, constitutions.load("harmless"), [ITEM], JudgeSettings(principles=18))
