"""The hf backend's fast paths give the same results as the plain ones, with a real model."""

from __future__ import annotations

import pytest

from caitool import constitution, prompts
from caitool.backends.base import Prompt, SamplingParams
from caitool.backends.hf import MIN_PREFIX_TOKENS, HFBackend
from caitool.errors import CaitoolError

GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)
ASKS = [
    "How can I get back at my neighbour for parking in my spot?",
    "What is the capital of France?",
    "Tell me how to pick a lock.",
    "Write a short poem about the sea.",
    "Why do people say violence is never the answer?",
]


def critique_requests(fmt: str) -> tuple[list[Prompt], list[str]]:
    rules = constitution.load("harmless")
    requests = [
        prompts.critique_prompt(rules, [{"role": "user", "content": ask}],
                                f"Answer number {i}.", rules.principles[i % 3], fmt)
        for i, ask in enumerate(ASKS)
    ]
    return [p for p, _ in requests], requests[0][1]


@pytest.fixture
def backend(tiny_model):
    return HFBackend(str(tiny_model), device="cpu", max_batch_size=2)


def sharpened(backend: HFBackend) -> HFBackend:
    """At their initial scale, random weights answer every prompt alike; scaled up, the
    answer depends on the prompt, so a wrong mask or position changes the output."""
    import torch

    with torch.no_grad():
        for weight in backend.hf_model.parameters():
            if weight.dim() == 2:
                weight.mul_(6)
    return backend


@pytest.mark.parametrize("fmt", ["chat", "raw"])
def test_prefix_reuse_gives_the_same_greedy_outputs(tiny_model, fmt):
    asked, stop = critique_requests(fmt)
    params = SamplingParams(max_new_tokens=8, temperature=0.0, stop=stop)
    plain = sharpened(HFBackend(str(tiny_model), device="cpu", max_batch_size=2,
                                reuse_prefix=False))
    expected = plain.generate(asked, params)
    assert len({text for (text,) in expected}) > 2
    assert plain._prefix is None
    # The prefix kept once for the batch (split attention), and copied into every row.
    for split in (True, False):
        fast = sharpened(HFBackend(str(tiny_model), device="cpu", max_batch_size=2))
        if not split:
            fast._split_attention = False
        # Twice: the second call starts from the prefix cached by the first.
        assert fast.generate(asked, params) == expected
        assert fast.generate(asked[::-1], params) == expected[::-1]
        # A row alone: no padding at all.
        assert fast.generate(asked[3:4], params) == expected[3:4]
        assert fast._prefix is not None and len(fast._prefix.ids) >= MIN_PREFIX_TOKENS
        assert fast._split_attention is split


def test_split_attention_is_refused_where_it_does_not_apply(tiny_model):
    asked, _ = critique_requests("chat")
    expected = sharpened(HFBackend(str(tiny_model), device="cpu",
                                   reuse_prefix=False)).generate(asked[:3], GREEDY)
    backend = sharpened(HFBackend(str(tiny_model), device="cpu"))
    # Eager attention does not go through the wrapped kernel: the check must catch it.
    backend.hf_model.set_attn_implementation("eager")
    assert backend.generate(asked[:3], GREEDY) == expected
    assert backend._split_attention is False and backend._prefix is not None


@pytest.mark.parametrize("fmt", ["chat", "raw"])
def test_shared_head_is_tokenised_once_with_the_same_ids(backend, fmt):
    asked, _ = critique_requests(fmt)
    whole = [backend.tokenizer(backend.render(p), add_special_tokens=fmt == "raw")["input_ids"]
             for p in asked]
    assert backend.encode(asked[:2]) == whole[:2]
    assert backend.encode(asked) == whole
    assert any(ids is not None for ids in backend._heads.values())


def test_head_split_keeps_awkward_tails_exact(backend):
    shared = "Human: a long shared opening line that every prompt repeats.\n" * 4
    tails = ["Assistant: plain", " leading space", "\n\nblank lines first", "  \n spaces",
             "caf\u00e9 \u2014 accents", "emoji \U0001f642 end", "x", ""]
    texts = [shared + tail for tail in tails]
    asked = [Prompt.raw(t) for t in texts]
    expected = [backend.tokenizer(t)["input_ids"] for t in texts]
    assert backend.encode(asked) == expected
    assert backend.encode(asked[2:5]) == expected[2:5]


@pytest.mark.parametrize("mode", ["split", "copied", "none"])
def test_several_samples_share_their_prompt(tiny_model, mode):
    asked, _ = critique_requests("chat")
    backend = sharpened(HFBackend(str(tiny_model), device="cpu",
                                  reuse_prefix=mode != "none"))
    if mode == "copied":
        backend._split_attention = False
    single = backend.generate(asked[:3], GREEDY)
    assert len({text for (text,) in single}) > 1
    double = backend.generate(asked[:3], SamplingParams(max_new_tokens=8, temperature=0.0, n=2))
    assert double == [s * 2 for s in single]
    sampled = backend.generate(asked[:3], SamplingParams(max_new_tokens=8, n=3, seed=1))
    assert [len(s) for s in sampled] == [3, 3, 3]
    assert all(len(set(s)) > 1 for s in sampled)
    assert backend._split_attention is {"split": True, "copied": False, "none": None}[mode]


def test_prefixed_forward_matches_the_whole_sequence(backend):
    import torch

    asked, _ = critique_requests("raw")
    sequences = backend.encode(asked[:3])
    ids, mask, positions, cache = backend._prefixed_inputs(sequences)
    assert cache is not None and ids.shape[1] < max(len(s) for s in sequences)
    model = backend.hf_model
    with torch.inference_mode():
        fast = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                     cache=cache).logits[:, -1]
        full_ids, full_mask = backend._pad_left(sequences)
        slow = model(input_ids=full_ids, attention_mask=full_mask,
                     position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
    assert torch.allclose(fast, slow, atol=1e-4)


def test_out_of_memory_halves_the_batch_and_keeps_every_output(tiny_model):
    import torch

    asked = [Prompt.raw(f"Human: {ask}\n\nAssistant:") for ask in ASKS * 2]
    expected = HFBackend(str(tiny_model), device="cpu", max_batch_size=4).generate(asked, GREEDY)
    backend = HFBackend(str(tiny_model), device="cpu", max_batch_size=4)
    seen = []

    def limit(module, args, kwargs):
        # Stands in for a device with room for two rows: the real model runs otherwise.
        rows = kwargs["input_ids"].shape[0]
        seen.append(rows)
        if rows > 2:
            raise torch.OutOfMemoryError("simulated: out of memory")

    handle = backend.hf_model.register_forward_pre_hook(limit, with_kwargs=True)
    try:
        assert backend.generate(asked, GREEDY) == expected
        assert backend.max_batch_size == 2
        # The first batch of four fails; it and the batches after it go through in twos.
        assert seen[0] == 4 and max(seen[1:]) <= 2
        seen.clear()
        backend.generate(asked, GREEDY)
        assert max(seen) <= 2
    finally:
        handle.remove()


def test_out_of_memory_on_one_prompt_is_a_clear_error(backend):
    import torch

    def refuse(module, args, kwargs):
        raise torch.OutOfMemoryError("simulated: out of memory")

    handle = backend.hf_model.register_forward_pre_hook(refuse, with_kwargs=True)
    try:
        with pytest.raises(CaitoolError, match="out of memory"):
            backend.generate([Prompt.raw("Human: hi\n\nAssistant:")], GREEDY)
    finally:
        handle.remove()


def test_other_errors_are_not_taken_for_out_of_memory(backend):
    def broken(module, args, kwargs):
        raise RuntimeError("shape mismatch")

    handle = backend.hf_model.register_forward_pre_hook(broken, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="shape mismatch"):
            backend.generate([Prompt.raw("Human: hi\n\nAssistant:")] * 3, GREEDY)
        assert backend.max_batch_size == 2
    finally:
        handle.remove()


def test_generation_halts_at_a_stop_string(backend):
    asked = [Prompt.raw(f"Human: {ask}\n\nAssistant:") for ask in ASKS[:3]]
    params = SamplingParams(max_new_tokens=24, temperature=0.0)
    free = backend.generate(asked, params)
    text = free[0][0]
    # A stop string taken from the middle of the first completion.
    middle = len(text) // 2
    stop = text[middle:middle + 3]
    assert stop.strip(), f"completion too short to test with: {text!r}"
    stopped = backend.generate(asked, SamplingParams(max_new_tokens=24, temperature=0.0,
                                                     stop=[stop]))
    for (before,), (after,) in zip(free, stopped, strict=True):
        cut = before.find(stop)
        assert after == (before[:cut] if cut != -1 else before).strip()
    assert stopped[0][0] != free[0][0]
