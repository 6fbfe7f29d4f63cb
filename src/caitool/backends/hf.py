"""In-process transformers backend: CPU or GPU, left-padded length-sorted batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from caitool.backends.base import Backend, OptionScores, Prompt, SamplingParams
from caitool.errors import CaitoolError


def check_model_path(model: str) -> None:
    """Fail early, in one line, for a local path that does not exist."""
    if os.path.exists(model):
        if os.path.isdir(model) and not os.path.exists(os.path.join(model, "config.json")):
            raise CaitoolError(f"model '{model}' is a directory without config.json")
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep + os.sep in model:
        raise CaitoolError(f"model path '{model}' does not exist")


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Generation halts on the token that completes a stop string; drop it and what follows."""
    cut = len(text)
    for marker in stop:
        index = text.find(marker)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 64, **options: Any):
        super().__init__(model, **options)
        check_model_path(model)
        self.device_name = device
        self.dtype_name = dtype
        self.max_batch_size = max_batch_size
        self._model = None
        self._tokenizer = None

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # caitool draws its own progress on stderr; the library's bars would interleave.
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        device = self.device_name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype: Any = self.dtype_name
        if dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise CaitoolError(f"unknown dtype '{self.dtype_name}' (use auto, float32, bfloat16, float16)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model)
            model = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CaitoolError(
                f"cannot load model '{self.model}': {first} (offline? build one with "
                "'caitool tiny-model DIR')"
            ) from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(device)
        model.eval()
        self.device = device
        self._tokenizer = tokenizer
        self._model = model

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    @property
    def hf_model(self):
        self._load()
        return self._model

    def default_format(self) -> str:
        return "chat" if getattr(self.tokenizer, "chat_template", None) else "raw"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    # -- rendering -------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        if not prompt.is_chat:
            return prompt.text or ""
        if not getattr(self.tokenizer, "chat_template", None):
            raise CaitoolError(f"model '{self.model}' has no chat template; use --format raw")
        text = self.tokenizer.apply_chat_template(
            prompt.message_dicts(), add_generation_prompt=True, tokenize=False
        )
        return text + prompt.assistant_prefix

    def encode(self, prompts: list[Prompt]) -> list[list[int]]:
        texts = [self.render(p) for p in prompts]
        # A chat template writes its own special tokens; a raw transcript takes the defaults.
        chat = [p.is_chat for p in prompts]
        if all(chat) or not any(chat):
            return self.tokenizer(texts, add_special_tokens=not chat[0])["input_ids"] if texts else []
        return [self.tokenizer(t, add_special_tokens=not c)["input_ids"] for t, c in zip(texts, chat)]

    # -- generation ------------------------------------------------------------------------

    def _sorted_batches(self, lengths: list[int], size: int) -> Iterator[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        for start in range(0, len(order), size):
            yield order[start:start + size]

    def _pad_left(self, sequences: list[list[int]]):
        import torch

        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        return ids.to(self.device), mask.to(self.device)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if not prompts:
            return []
        import torch

        encoded = self.encode(prompts)
        results: list[list[str]] = [[] for _ in prompts]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        size = max(1, self.max_batch_size // max(1, params.n))
        pending = list(self._sorted_batches([len(e) for e in encoded], size))
        while pending:
            batch = pending.pop(0)
            try:
                texts = self._generate_batch([encoded[i] for i in batch], params)
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise CaitoolError("out of memory on a single prompt; lower --max-new-tokens") from None
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                self.max_batch_size = max(1, self.max_batch_size // 2)
                continue
            for row, index in enumerate(batch):
                results[index] = texts[row * params.n:(row + 1) * params.n]
        return results

    def _generate_batch(self, sequences: list[list[int]], params: SamplingParams) -> list[str]:
        import torch

        ids, mask = self._pad_left(sequences)
        sample = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": params.n,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            output = self.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new_tokens = output[:, ids.shape[1]:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(text, params.stop).strip() for text in texts]

    # -- option scoring --------------------------------------------------------------------

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        """Sum of token log-probabilities of each option after its prompt.

        Each prompt (with the tokens its options all start with) goes through the model once;
        the first distinct token of every option is read from that pass's last position.
        Options longer than that (" (A)" is " (", "A", ")" for most tokenizers) continue from
        the prompt's KV cache in one short second pass over all their remaining tokens. All
        prompts go through in length-sorted batches, halved on running out of memory.
        """
        if not prompts:
            return []
        import torch

        encoded = self.encode(prompts)
        jobs: list[_ScoreJob] = []
        for index, (prompt_ids, opts) in enumerate(zip(encoded, options, strict=True)):
            option_ids = [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in opts]
            if any(not ids for ids in option_ids):
                raise CaitoolError("cannot score an empty option")
            if not option_ids:
                continue
            # Every option keeps at least one token of its own to be scored.
            shared = _common_prefix(option_ids)[:min(len(ids) for ids in option_ids) - 1]
            context = prompt_ids + shared
            if not context:
                raise CaitoolError("cannot score options after an empty prompt")
            jobs.append(_ScoreJob(index, context, shared,
                                  [ids[len(shared):] for ids in option_ids]))
        scores: list[list[float]] = [[] for _ in prompts]
        pending = list(self._sorted_batches([len(j.context) for j in jobs], self.max_batch_size))
        while pending:
            batch = pending.pop(0)
            try:
                results = self._score_batch([jobs[i] for i in batch])
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise CaitoolError("out of memory scoring a single prompt; use a shorter "
                                       "prompt or a smaller model") from None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                continue
            for job_index, values in zip(batch, results, strict=True):
                scores[jobs[job_index].prompt_index] = values
        return [OptionScores(s) for s in scores]

    def _forward_kwargs(self, keep: int, cache: Any = None) -> dict[str, Any]:
        """Ask for logits at the last ``keep`` positions only (over a long few-shot prompt the
        full logits tensor, positions x vocabulary, would dwarf the activations), and pass a
        KV cache under whichever name this model's forward takes."""
        import inspect

        params = getattr(self, "_forward_params", None)
        if params is None:
            params = self._forward_params = set(inspect.signature(self.hf_model.forward).parameters)
        kwargs: dict[str, Any] = {"logits_to_keep": keep} if "logits_to_keep" in params else {}
        if cache is not None:
            kwargs["cache" if "cache" in params else "past_key_values"] = cache
        return kwargs

    def _score_batch(self, jobs: list[_ScoreJob]) -> list[list[float]]:
        import torch

        model = self.hf_model
        ids, mask = self._pad_left([job.context for job in jobs])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        longest = max(len(tail) for job in jobs for tail in job.tails)
        # The shared tokens end the context: their log-probabilities are read from the
        # positions just before its end, so keep that many more positions' logits.
        keep = max(len(job.shared) for job in jobs) + 1
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                        use_cache=longest > 1, **self._forward_kwargs(keep))
            first = torch.log_softmax(out.logits[:, -keep:].float(), dim=-1)
            results = []
            for row, job in enumerate(jobs):
                n = len(job.shared)
                shared = sum(float(first[row, keep - 1 - n + i, token])
                             for i, token in enumerate(job.shared))
                results.append([shared + float(first[row, -1, tail[0]]) for tail in job.tails])
            if longest == 1:
                return results
            # Second pass: the rest of every option, one row per (prompt, option), continuing
            # from the prompt's cache repeated once per option.
            per_prompt = max(len(job.tails) for job in jobs)
            width = longest - 1
            cache = out.past_key_values
            if cache is None:
                raise CaitoolError(f"model '{self.model}' returns no KV cache, so options "
                                   "longer than one token cannot be scored")
            cache.batch_repeat_interleave(per_prompt)
            pad = self.tokenizer.pad_token_id
            tail_ids = torch.full((len(jobs) * per_prompt, width), pad, dtype=torch.long)
            tail_mask = torch.zeros_like(tail_ids)
            for row, job in enumerate(jobs):
                for k, tail in enumerate(job.tails):
                    feed = tail[:-1]
                    if feed:
                        tail_ids[row * per_prompt + k, :len(feed)] = torch.tensor(feed)
                        tail_mask[row * per_prompt + k, :len(feed)] = 1
            tail_ids, tail_mask = tail_ids.to(ids.device), tail_mask.to(ids.device)
            starts = mask.sum(-1).repeat_interleave(per_prompt)
            tail_positions = starts[:, None] + torch.arange(width, device=ids.device)[None, :]
            full_mask = torch.cat([mask.repeat_interleave(per_prompt, dim=0), tail_mask], dim=-1)
            logits = model(input_ids=tail_ids, attention_mask=full_mask,
                           position_ids=tail_positions, use_cache=False,
                           **self._forward_kwargs(width, cache)).logits
            rest = torch.log_softmax(logits[:, -width:].float(), dim=-1)
            for row, job in enumerate(jobs):
                for k, tail in enumerate(job.tails):
                    for offset, token in enumerate(tail[1:]):
                        results[row][k] += float(rest[row * per_prompt + k, offset, token])
        return results

    def close(self) -> None:
        self._model = None


@dataclass
class _ScoreJob:
    prompt_index: int
    context: list[int]          # prompt tokens, then the tokens all options start with
    shared: list[int]           # the tokens all options start with
    tails: list[list[int]]      # each option's own tokens (at least one)


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    prefix: list[int] = []
    for column in zip(*sequences, strict=False):
        if any(token != column[0] for token in column):
            break
        prefix.append(column[0])
    return prefix
