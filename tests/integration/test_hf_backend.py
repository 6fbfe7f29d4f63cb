"""The hf backend's fast paths give the same results as the plain ones, with a real model."""

from __future__ import annotations

import pytest

from caitool import constitution, render
from caitool.backends.base import SamplingParams
from caitool.backends.hf import HFBackend
from caitool.backends.hf.batching import pad_left
from caitool.backends.hf.prefix_cache import MIN_PREFIX_TOKENS
from caitool.errors import CaitoolError
from caitool.render import Prompt
from score_checks import ASKS, check_cached_scores_equal_plain_ones

GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)


def critique_requests(fmt: str) -> tuple[list[Prompt], list[str]]:
    rules = constitution.load("harmless")
    requests = [
        render.critique_prompt(rules, [{"role": "user", "content": ask}],
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
    assert plain.prefix_cache.prefix is None
    # The prefix kept once for the batch (split attention), and copied into every row.
    for split in (True, False):
        fast = sharpened(HFBackend(str(tiny_model), device="cpu", max_batch_size=2))
        if not split:
            fast.prefix_cache.split_attention = False
        # Twice: the second call starts from the prefix cached by the first.
        assert fast.generate(asked, params) == expected
        assert fast.generate(asked[::-1], params) == expected[::-1]
        # A row alone: no padding at all.
        assert fast.generate(asked[3:4], params) == expected[3:4]
        prefix = fast.prefix_cache.prefix
        assert prefix is not None and len(prefix.ids) >= MIN_PREFIX_TOKENS
        assert fast.prefix_cache.split_attention is split


def test_split_attention_is_refused_where_it_does_not_apply(tiny_model):
    asked, _ = critique_requests("chat")
    expected = sharpened(HFBackend(str(tiny_model), device="cpu",
                                   reuse_prefix=False)).generate(asked[:3], GREEDY)
    # The same weights under sdpa first: the check passes there, and its verdict is stored.
    sdpa = sharpened(HFBackend(str(tiny_model), device="cpu"))
    assert sdpa.generate(asked[:3], GREEDY) == expected and sdpa.prefix_cache.split_attention
    backend = sharpened(HFBackend(str(tiny_model), device="cpu"))
    # Eager attention does not go through the wrapped kernel: the check must catch it, and
    # the verdict stored for sdpa must not stand for it.
    backend.hf_model.set_attn_implementation("eager")
    assert backend.generate(asked[:3], GREEDY) == expected
    assert backend.prefix_cache.split_attention is False and backend.prefix_cache.prefix is not None


@pytest.mark.parametrize("fmt", ["chat", "raw"])
def test_shared_head_is_tokenised_once_with_the_same_ids(backend, fmt):
    asked, _ = critique_requests(fmt)
    whole = [backend.tokenizer(backend.render(p), add_special_tokens=fmt == "raw")["input_ids"]
             for p in asked]
    assert backend.encode(asked[:2]) == whole[:2]
    assert backend.encode(asked) == whole
    assert any(ids is not None for ids in backend.prefix_cache.heads.values())


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
        backend.prefix_cache.split_attention = False
    single = backend.generate(asked[:3], GREEDY)
    assert len({text for (text,) in single}) > 1
    double = backend.generate(asked[:3], SamplingParams(max_new_tokens=8, temperature=0.0, n=2))
    assert double == [s * 2 for s in single]
    sampled = backend.generate(asked[:3], SamplingParams(max_new_tokens=8, n=3, seed=1))
    assert [len(s) for s in sampled] == [3, 3, 3]
    assert all(len(set(s)) > 1 for s in sampled)
    assert backend.prefix_cache.split_attention is {"split": True, "copied": False, "none": None}[mode]


@pytest.mark.parametrize("split", [True, False])
def test_inputs_after_the_cached_prefix_match_the_whole_sequences(tiny_model, split):
    """What generation starts from, checked on the model's logits rather than on a few
    greedy tokens: the prefix kept once or copied per row gives each row its own prompt."""
    import torch

    backend = sharpened(HFBackend(str(tiny_model), device="cpu"))
    if not split:
        backend.prefix_cache.split_attention = False
    asked, _ = critique_requests("raw")
    sequences = backend.encode(asked[:3])
    batch = backend.prefix_cache.inputs(sequences, new_tokens=1)
    assert backend.prefix_cache.split_attention is split and (batch.split is not None) is split
    assert batch.ids.shape[1] - batch.cached < max(len(s) for s in sequences)
    positions = batch.positions
    if positions is None:
        positions = (batch.mask.cumsum(-1) - 1).clamp(min=0)
    model = backend.hf_model
    with torch.inference_mode():
        with batch.attending():
            fast = model(input_ids=batch.ids[:, batch.cached:], attention_mask=batch.mask,
                         position_ids=positions[:, batch.cached:], cache=batch.cache).logits[:, -1]
        full_ids, full_mask = pad_left(sequences, backend.tokenizer.pad_token_id, backend.device)
        slow = model(input_ids=full_ids, attention_mask=full_mask,
                     position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
    # Rows that differ, so that a row given another's prompt would show.
    assert not torch.allclose(slow[0], slow[1], atol=1e-2)
    assert torch.allclose(fast, slow, atol=1e-4, rtol=1e-4)


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


JUDGED = [Prompt.raw(f"Human: {ask}\n\nAssistant:") for ask in ASKS * 2]
OPTIONS = [" (A)", " (B)"]


def run_path(backend: HFBackend, path: str, asked: list[Prompt]) -> list:
    if path == "generate":
        return backend.generate(asked, GREEDY)
    return [s.logprobs for s in backend.score(asked, [OPTIONS] * len(asked))]


def same_results(path: str, got: list, expected: list) -> bool:
    if path == "generate":
        return got == expected
    # Scores of a prompt batched with other neighbours may differ in the last float bits.
    return all(g == pytest.approx(e, rel=1e-5, abs=1e-5) for g, e in zip(got, expected, strict=True))


def out_of_memory(kind: str) -> RuntimeError:
    import torch

    if kind == "cuda":
        return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: "
                        "can't allocate memory: you tried to allocate 123456789 bytes.")


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
@pytest.mark.parametrize("path", ["generate", "score"])
def test_generate_and_score_back_off_alike_on_out_of_memory(tiny_model, monkeypatch, path, kind):
    expected = run_path(HFBackend(str(tiny_model), device="cpu", max_batch_size=4), path, JUDGED)
    backend = HFBackend(str(tiny_model), device="cpu", max_batch_size=4)
    run_batch = getattr(backend, f"_{path}_batch")
    seen = []

    def two_rows_fit(rows, *args):
        seen.append(len(rows))
        if len(rows) > 2:
            raise out_of_memory(kind)
        return run_batch(rows, *args)

    monkeypatch.setattr(backend, f"_{path}_batch", two_rows_fit)
    assert same_results(path, run_path(backend, path, JUDGED), expected)
    assert backend.max_batch_size == 2
    assert seen[0] == 4 and max(seen[1:]) <= 2 and sum(seen[1:]) == len(JUDGED)
    # Later calls start from the size that fitted.
    seen.clear()
    assert same_results(path, run_path(backend, path, JUDGED), expected)
    assert max(seen) == 2


@pytest.mark.parametrize("path", ["generate", "score"])
def test_out_of_memory_on_one_prompt_is_a_clear_error(backend, path):
    import torch

    def refuse(module, args, kwargs):
        raise torch.OutOfMemoryError("simulated: out of memory")

    handle = backend.hf_model.register_forward_pre_hook(refuse, with_kwargs=True)
    try:
        with pytest.raises(CaitoolError, match="^out of memory [^\n]*$"):
            run_path(backend, path, [Prompt.raw("Human: hi\n\nAssistant:")])
        assert backend.max_batch_size == 2
    finally:
        handle.remove()


@pytest.mark.parametrize("path", ["generate", "score"])
def test_other_errors_are_not_taken_for_out_of_memory(backend, path):
    def broken(module, args, kwargs):
        raise RuntimeError("shape mismatch")

    handle = backend.hf_model.register_forward_pre_hook(broken, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="shape mismatch"):
            run_path(backend, path, [Prompt.raw("Human: hi\n\nAssistant:")] * 3)
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


def test_repetition_penalty_and_top_k_reach_generation(tiny_model):
    backend = sharpened(HFBackend(str(tiny_model), device="cpu"))
    asked = [Prompt.chat([{"role": "user", "content": ask}]) for ask in ASKS[:3]]
    long = SamplingParams(max_new_tokens=24, temperature=0.0)
    plain = backend.generate(asked, long)
    penalised = backend.generate(asked, SamplingParams(max_new_tokens=24, temperature=0.0,
                                                       repetition_penalty=2.0))
    assert penalised != plain
    # top-k 1 samples the likeliest token: sampling becomes greedy.
    one = SamplingParams(max_new_tokens=24, temperature=1.0, top_k=1, seed=3)
    assert backend.generate(asked, one) == plain


@pytest.mark.parametrize("fmt", ["raw", "chat"])
def test_scores_from_the_cached_prefix_equal_a_plain_forward_pass(tiny_model, fmt):
    check_cached_scores_equal_plain_ones(str(tiny_model), fmt)


def ending_early(backend: HFBackend, asked: list[Prompt]) -> int:
    """Make the sharpened tiny model end rows at different lengths: the end-of-sequence
    token becomes one that its greedy answers produce, somewhere, in some rows only."""
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    encoded = backend.encode(asked)
    outputs = []
    import torch

    for ids in encoded:
        with torch.inference_mode():
            out = backend.hf_model.generate(input_ids=torch.tensor([ids]), do_sample=False,
                                            max_new_tokens=params.max_new_tokens,
                                            pad_token_id=backend.tokenizer.pad_token_id)
        outputs.append(out[0, len(ids):].tolist())
    counts: dict[int, int] = {}
    for row in outputs:
        for token in set(row):
            counts[token] = counts.get(token, 0) + 1
    # A token found in some rows but not all: those rows end early, the others run on.
    token = next(t for t, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n < len(outputs))
    backend.hf_model.generation_config.eos_token_id = token
    backend.tokenizer.eos_token = backend.tokenizer.convert_ids_to_tokens(token)
    return token


@pytest.mark.parametrize("params", [
    SamplingParams(max_new_tokens=12, temperature=0.0),
    SamplingParams(max_new_tokens=12, temperature=0.0, repetition_penalty=1.3),
    SamplingParams(max_new_tokens=12, temperature=0.0, n=2),
], ids=["greedy", "repetition-penalty", "two-samples"])
def test_finished_rows_leave_the_batch_with_the_same_outputs(tiny_model, params):
    asked, _ = critique_requests("chat")
    kept = sharpened(HFBackend(str(tiny_model), device="cpu", drop_finished=False))
    ending_early(kept, asked)
    expected = kept.generate(asked, params)
    dropping = sharpened(HFBackend(str(tiny_model), device="cpu"))
    ending_early(dropping, asked)
    steps: list[int] = []  # rows in each one-token decoding step

    def count(module, args, kwargs):
        if kwargs["input_ids"].shape[1] == 1:
            steps.append(kwargs["input_ids"].shape[0])

    hook = dropping.hf_model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        assert dropping.generate(asked, params) == expected
    finally:
        hook.remove()
    lengths = {len(text) for samples in expected for text in samples}
    assert len(lengths) > 1, "the rows should end at different lengths"
    # The rows still running shrink as rows finish.
    assert any(later < earlier for earlier, later in zip(steps, steps[1:]))


def test_stop_strings_end_a_row_in_the_loop(tiny_model):
    asked, _ = critique_requests("raw")
    plain = sharpened(HFBackend(str(tiny_model), device="cpu", drop_finished=False))
    free = plain.generate(asked, SamplingParams(max_new_tokens=10, temperature=0.0))
    # A stop string from inside one row's answer: that row is cut there, as with generate().
    text = next(t for (t,) in free if len(t) > 6)
    stop = text[2:5]
    params = SamplingParams(max_new_tokens=10, temperature=0.0, stop=[stop])
    expected = plain.generate(asked, params)
    got = sharpened(HFBackend(str(tiny_model), device="cpu")).generate(asked, params)
    assert got == expected
    assert any(stop not in t and len(t) < len(f) for (t,), (f,) in zip(got, free, strict=True))


def test_seeded_sampling_in_the_loop_is_reproducible(tiny_model):
    asked, _ = critique_requests("chat")
    params = SamplingParams(max_new_tokens=8, temperature=0.8, top_p=0.9, top_k=20, seed=3)
    backend = sharpened(HFBackend(str(tiny_model), device="cpu"))
    first = backend.generate(asked, params)
    assert backend.generate(asked, params) == first
    assert len({text for (text,) in first}) > 1


def test_each_few_shot_block_in_use_keeps_its_own_prefix(backend):
    """Batches from two constitutions (as eval and ablations mix them) share a short head and
    each a long few-shot block: every batch starts from its own block, not the short head."""
    cache = backend.prefix_cache
    head = list(range(10, 10 + MIN_PREFIX_TOKENS))
    blocks = {name: head + [start + i for i in range(3 * MIN_PREFIX_TOKENS)]
              for name, start in (("a", 200), ("b", 400))}

    def batch(name: str) -> list[list[int]]:
        return [blocks[name] + [600 + row, 700 + row] for row in range(3)]

    for name in ("a", "b", "a", "b"):
        assert cache.lookup(batch(name)).ids == blocks[name]
    # A row alone starts from its block too, without caching its whole prompt.
    assert cache.lookup(batch("a")[:1]).ids == blocks["a"]
    assert len(cache.prefixes) == 2
    # Rows that share only the head start from it.
    mixed = [batch("a")[0], batch("b")[0]]
    assert cache.lookup(mixed).ids == head


def test_auto_dtype_generates_in_bfloat16_and_scores_in_float32(tiny_model, monkeypatch):
    """Where --dtype auto picks bfloat16 for generation, scoring runs a float32 copy and
    gives the float32 backend's scores exactly; generation runs the bfloat16 model."""
    import torch

    from caitool.backends.hf import precision

    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    monkeypatch.setattr(precision, "MIN_WIDE_HIDDEN_SIZE", 1)
    mixed = HFBackend(str(tiny_model), device="cpu")
    plain = HFBackend(str(tiny_model), device="cpu", dtype="float32")
    prompts = [Prompt.raw(f"Human: {ask}\n\nAssistant: The better answer is") for ask in ASKS[:3]]
    options = [[" (A)", " (B)"]] * len(prompts)
    assert [s.logprobs for s in mixed.score(prompts, options)] == \
        [s.logprobs for s in plain.score(prompts, options)]
    assert mixed.scoring_model.dtype == torch.float32 and list(mixed._loaded) == ["float32"]
    texts = mixed.generate(prompts, GREEDY)
    assert len(texts) == len(prompts) and all(len(t) == 1 for t in texts)
    assert mixed.hf_model.dtype == torch.bfloat16 and sorted(mixed._loaded) == ["bfloat16", "float32"]
