"""The vllm backend. Turning caitool requests into vLLM inputs and reading vLLM outputs back
is tested here with the tiny model's real tokenizer and weights; the end-to-end tests need
vLLM and a CUDA GPU and are skipped elsewhere."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from caitool.backends import vllm as vb
from caitool.backends.base import SamplingParams
from caitool.backends.hf import HFBackend
from caitool.errors import CaitoolError
from caitool.render import Prompt
from helpers import FAST, caitool, jsonl, records

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


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_without_vllm_the_backend_says_how_to_install_it(tiny_model):
    result = caitool("generate", "--backend", "vllm", "-m", tiny_model,
                     input=jsonl([{"prompt": "hi"}]), check=False, timeout=120)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines() == [
        "caitool generate: the vllm backend needs vLLM: pip install 'caitool[vllm]' "
        "(vLLM 0.27.1; needs a CUDA GPU)"]


# -- with vLLM on a GPU --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_model(tmp_path_factory):
    pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from caitool.testing.tiny import build

    # vLLM's attention kernels want a head size of at least 32.
    return build(tmp_path_factory.mktemp("models") / "tiny-gpu", hidden_size=128, heads=2)


@pytest.mark.gpu
def test_vllm_generates_and_scores_like_hf(gpu_model, monkeypatch):
    monkeypatch.setenv(vb.LLM_ARGS_ENV, '{"gpu_memory_utilization": 0.3, "max_model_len": 4096}')
    backend = vb.VLLMBackend(str(gpu_model), dtype="float32")
    assert backend.has_chat_template()
    outputs = backend.generate(PROMPTS, SamplingParams(max_new_tokens=8, n=2, seed=1))
    assert [len(o) for o in outputs] == [2, 2, 2]
    greedy = SamplingParams(max_new_tokens=8, temperature=0)
    assert backend.generate(PROMPTS, greedy) == backend.generate(PROMPTS, greedy)
    scores = backend.score(PROMPTS, OPTIONS)
    reference = HFBackend(str(gpu_model), device="cpu", dtype="float32").score(PROMPTS, OPTIONS)
    for got, want in zip(scores, reference, strict=True):
        assert got.method == "logprobs"
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-2)


@pytest.mark.gpu
def test_vllm_backend_from_the_command_line(gpu_model, smoke_prompts):
    result = caitool("critique", "--backend", "vllm", "-m", gpu_model, *FAST,
                     input=smoke_prompts, timeout=600,
                     env={vb.LLM_ARGS_ENV: '{"gpu_memory_utilization": 0.3}'})
    out = records(result.stdout)
    assert len(out) == 8
    assert all(r["provenance"]["critique"]["backend"] == "vllm" for r in out)
