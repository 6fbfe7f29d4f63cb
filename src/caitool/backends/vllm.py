"""In-process vLLM (optional extra ``caitool[vllm]``; CUDA GPUs).

Prompts are rendered and tokenized here, exactly as the hf backend does, and handed to
``LLM.generate`` as token ids: chat and raw prompts, assistant prefixes and option scoring
then behave the same on both backends. Prefix caching stays on, so the few-shot examples
that open every critique prompt are computed once. Option scores are the summed
``prompt_logprobs`` of each option's tokens after the prompt.

The functions above the class turn caitool requests into vLLM's inputs and read its outputs
back; they need only a tokenizer and are tested without vLLM.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Any

from caitool import models
from caitool.backends.base import Backend, OptionScores, SamplingParams, cut_at_stop
from caitool.errors import CaitoolError
from caitool.render import Prompt, has_chat_template, option_ids, prompt_ids

INSTALL_HINT = "pip install 'caitool[vllm]' (vLLM 0.27.1; needs a CUDA GPU)"
# Extra keyword arguments for vllm.LLM, as a JSON object (gpu_memory_utilization, ...).
LLM_ARGS_ENV = "CAITOOL_VLLM_ARGS"


def encode(tokenizer: Any, prompts: list[Prompt]) -> list[list[int]]:
    """Token ids of each prompt, as the hf backend and training render them."""
    return [prompt_ids(tokenizer, p) for p in prompts]


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """caitool's sampling settings as ``vllm.SamplingParams`` keyword arguments."""
    greedy = params.temperature <= 0
    kwargs: dict[str, Any] = {
        "n": max(1, params.n),
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "max_tokens": params.max_new_tokens,
        "skip_special_tokens": True,
    }
    if params.top_k > 0 and not greedy:
        kwargs["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = params.repetition_penalty
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.seed is not None:
        kwargs["seed"] = params.seed
    return kwargs


def token_prompts(encoded: list[list[int]]) -> list[dict[str, list[int]]]:
    """vLLM's ``TokensPrompt`` form."""
    return [{"prompt_token_ids": ids} for ids in encoded]


def completion_texts(output: Any, stop: list[str]) -> list[str]:
    """The texts of one ``RequestOutput``, cut and stripped as the hf backend's are."""
    return [cut_at_stop(completion.text, stop).strip() for completion in output.outputs]


def scoring_jobs(tokenizer: Any, prompts: list[Prompt], options: list[list[str]]
                 ) -> list[tuple[int, int, list[int], int]]:
    """One sequence per (prompt, option): (prompt index, option index, prompt and option
    tokenised together, where the option's own tokens start; see render.split_options)."""
    jobs = []
    for index, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
        if not opts:
            continue
        context, tails = option_ids(tokenizer, prompt, opts)
        for option_index, tail in enumerate(tails):
            jobs.append((index, option_index, context + tail, len(context)))
    return jobs


def option_logprob(prompt_logprobs: Any, sequence: list[int], start: int) -> float:
    """Sum of the log-probabilities of ``sequence[start:]`` from vLLM's ``prompt_logprobs``
    (per position, a mapping from token id to an object with ``.logprob``)."""
    if start < 1:
        raise CaitoolError("an option cannot be scored without a prompt before it")
    total = 0.0
    for position in range(start, len(sequence)):
        entry = prompt_logprobs[position][sequence[position]]
        total += float(getattr(entry, "logprob", entry))
    return total


def llm_kwargs(model: str, tensor_parallel_size: int, dtype: str,
               extra: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": model, "tensor_parallel_size": tensor_parallel_size,
                              "dtype": dtype, "enable_prefix_caching": True}
    if extra:
        try:
            more = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise CaitoolError(f"{LLM_ARGS_ENV} must be a JSON object ({exc.msg})") from None
        if not isinstance(more, dict):
            raise CaitoolError(f"{LLM_ARGS_ENV} must be a JSON object")
        kwargs.update(more)
    return kwargs


@dataclass
class VLLMOptions:
    tensor_parallel_size: int = 1   # GPUs per model replica
    dtype: str = "auto"             # auto, float32, bfloat16, float16

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1:
            raise CaitoolError("--tensor-parallel-size must be at least 1")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16", "half"):
            raise CaitoolError(f"unknown --dtype '{self.dtype}' (use auto, float32, bfloat16, float16)")


class VLLMBackend(Backend):
    name = "vllm"
    Options = VLLMOptions
    loads_models = True

    def __init__(self, model: str, **options: Any):
        super().__init__(model, **options)
        if importlib.util.find_spec("vllm") is None:
            raise CaitoolError(f"the vllm backend needs vLLM: {INSTALL_HINT}")
        models.check(model)
        self.kwargs = llm_kwargs(model, self.options.tensor_parallel_size, self.options.dtype,
                                 os.environ.get(LLM_ARGS_ENV))
        self._llm = None

    @property
    def llm(self):
        if self._llm is None:
            from vllm import LLM

            # A GGUF file or built-in name becomes its converted directory only now, so that
            # constructing the backend stays cheap.
            kwargs = {**self.kwargs, "model": models.local_model(self.kwargs["model"])}
            try:
                self._llm = LLM(**kwargs)
            except (OSError, ValueError, RuntimeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CaitoolError(f"vLLM cannot load '{self.model}': {first}") from None
        return self._llm

    @property
    def tokenizer(self):
        return self.llm.get_tokenizer()

    def has_chat_template(self) -> bool:
        return has_chat_template(self.tokenizer)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, "model": self.model}
        if self.kwargs["tensor_parallel_size"] > 1:
            info["tensor_parallel_size"] = self.kwargs["tensor_parallel_size"]
        return info

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if not prompts:
            return []
        from vllm import SamplingParams as VLLMSamplingParams

        encoded = encode(self.tokenizer, prompts)
        outputs = self.llm.generate(token_prompts(encoded),
                                    VLLMSamplingParams(**sampling_kwargs(params)), use_tqdm=False)
        return [completion_texts(output, params.stop) for output in outputs]

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        if not prompts:
            return []
        from vllm import SamplingParams as VLLMSamplingParams

        jobs = scoring_jobs(self.tokenizer, prompts, options)
        # One token is generated and ignored; the prompt's own log-probabilities are the point.
        params = VLLMSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self.llm.generate(token_prompts([job[2] for job in jobs]), params,
                                    use_tqdm=False)
        scores = [[0.0] * len(opts) for opts in options]
        for (index, option_index, sequence, start), output in zip(jobs, outputs, strict=True):
            scores[index][option_index] = option_logprob(output.prompt_logprobs, sequence, start)
        return [OptionScores(s) for s in scores]

    def close(self) -> None:
        self._llm = None
