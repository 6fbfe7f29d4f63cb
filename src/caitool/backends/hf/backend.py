"""In-process transformers backend: CPU or GPU, left-padded length-sorted batches.

This module loads the model, encodes prompts and runs generation and option scoring. The
shared few-shot prefix of critique and revision prompts is handled by ``prefix_cache`` (and
attended to once per batch by ``shared_prefix``); batching and the back-off on running out
of memory, the same for both paths, by ``batching``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from caitool import models
from caitool.backends.base import Backend, OptionScores, SamplingParams, cut_at_stop
from caitool.backends.hf import decode, precision
from caitool.backends.hf.batching import forward_kwargs, run_in_batches
from caitool.backends.hf.prefix_cache import BatchInputs, PrefixCache, common_prefix
from caitool.errors import CaitoolError
from caitool.render import Prompt, adds_special_tokens, has_chat_template, prompt_text, split_options


def check_model_path(model: str) -> None:
    """Fail early, in one line, for a local path that does not exist (or a built-in model
    that is not installed). GGUF files and short names are converted later, on loading."""
    models.check(model)
    if os.path.exists(model):
        if os.path.isdir(model) and not os.path.exists(os.path.join(model, "config.json")):
            raise CaitoolError(f"model '{model}' is a directory without config.json "
                               "(for a GGUF file, name the file itself)")
        return
    if model in models.BUILTIN:
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep + os.sep in model:
        raise CaitoolError(f"model path '{model}' does not exist")


DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class HFOptions:
    device: str = "auto"            # cpu, cuda, cuda:1 ... or auto
    dtype: str = "auto"             # auto, float32, bfloat16, float16
    max_batch_size: int = 64        # rows per forward pass (halved on running out of memory)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise CaitoolError(f"unknown --dtype '{self.dtype}' (use {', '.join(DTYPES)})")
        if self.max_batch_size < 1:
            raise CaitoolError("--max-batch-size must be at least 1")


class HFBackend(Backend):
    name = "hf"
    Options = HFOptions
    loads_models = True

    def __init__(self, model: str, reuse_prefix: bool = True, drop_finished: bool = True,
                 pack_weights: bool = True, **options: Any):
        """``reuse_prefix``, ``drop_finished`` and ``pack_weights`` are off only to measure
        what sharing the few-shot prefix, dropping finished rows and laying the weights out
        for the CPU's kernels save (``make bench``); they are no options a user sets."""
        super().__init__(model, **options)
        check_model_path(model)
        self.device_name = self.options.device
        self.dtype_name = self.options.dtype
        self.max_batch_size = self.options.max_batch_size
        self.reuse_prefix = reuse_prefix
        self.drop_finished = drop_finished
        self.pack_weights = pack_weights
        self._tokenizer = None
        self._path = ""
        self._dtypes: dict[str, str] = {}
        # dtype name -> the model loaded in it.
        self._loaded: dict[str, _Weights] = {}

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        """The tokenizer and the generation model (scoring's, when it differs, on first use)."""
        if self._tokenizer is not None:
            return
        import torch
        import transformers
        from transformers import AutoConfig, AutoTokenizer

        # caitool draws its own progress on stderr; the library's bars would interleave.
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        device = self.device_name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        path = models.local_model(self.model)
        models.check_loadable(path, self.model)
        with self._loading(path):
            tokenizer = AutoTokenizer.from_pretrained(path)
            config = AutoConfig.from_pretrained(path)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device = device
        self._path = path
        self._tokenizer = tokenizer
        if self.dtype_name == "auto":
            self._dtypes = {"generate": precision.generation_dtype(device, config),
                            "score": precision.scoring_dtype(device, config)}
        else:
            self._dtypes = {"generate": self.dtype_name, "score": self.dtype_name}

    @contextlib.contextmanager
    def _loading(self, path: str):
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - a model that will not load is the user's to fix
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = " (offline? build one with 'caitool tiny-model DIR')" \
                if isinstance(exc, OSError) and not os.path.isdir(path) else ""
            raise CaitoolError(f"cannot load model '{self.model}': {first}{hint}") from None

    def _weights(self, purpose: str) -> _Weights:
        """The model (and its prefix cache) for ``purpose``, generate or score: one object
        for both unless their dtypes differ (:mod:`.precision`)."""
        self._load()
        dtype = self._dtypes[purpose]
        if dtype not in self._loaded:
            import torch
            from transformers import AutoModelForCausalLM

            with self._loading(self._path):
                model = AutoModelForCausalLM.from_pretrained(self._path, dtype=getattr(torch, dtype))
            model.to(self.device)
            model.eval()
            if self.device == "cpu" and self.pack_weights \
                    and getattr(model.config, "hidden_size", 0) >= precision.MIN_WIDE_HIDDEN_SIZE:
                from caitool.backends.hf.packed_linear import pack_for_cpu

                pack_for_cpu(model)
            self._loaded[dtype] = _Weights(model, PrefixCache(self._tokenizer, model, self.device,
                                                              enabled=self.reuse_prefix,
                                                              path=self._path))
        return self._loaded[dtype]

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    @property
    def hf_model(self):
        """The generation model."""
        return self._weights("generate").model

    @property
    def prefix_cache(self) -> PrefixCache:
        return self._weights("generate").prefix_cache

    @property
    def scoring_model(self):
        """The model option scoring runs (the generation model unless dtypes differ)."""
        return self._weights("score").model

    def has_chat_template(self) -> bool:
        return has_chat_template(self.tokenizer)

    # -- encoding --------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        return prompt_text(self.tokenizer, prompt, self.model)

    def encode(self, prompts: list[Prompt], purpose: str = "generate") -> list[list[int]]:
        if not prompts:
            return []
        texts = [self.render(p) for p in prompts]
        special = [adds_special_tokens(p) for p in prompts]
        if all(special) or not any(special):
            cache = self._weights(purpose).prefix_cache
            return cache.tokenize(texts, add_special=special[0])
        return [self.tokenizer(t, add_special_tokens=s)["input_ids"] for t, s in zip(texts, special)]

    # -- generation ------------------------------------------------------------------------

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if not prompts:
            return []
        import torch

        encoded = self.encode(prompts)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        # The batch size counts rows, and each prompt makes n of them.
        samples = max(1, params.n)

        def run(batch: list[int]) -> list[list[str]]:
            texts = self._generate_batch([encoded[i] for i in batch], params)
            return [texts[row * params.n:(row + 1) * params.n] for row in range(len(batch))]

        def shrink(prompts_per_batch: int) -> None:
            self.max_batch_size = prompts_per_batch * samples

        return run_in_batches([len(e) for e in encoded], max(1, self.max_batch_size // samples),
                              run, shrink=shrink,
                              single_row_error="out of memory on a single prompt; lower --max-new-tokens")

    def _generate_batch(self, sequences: list[list[int]], params: SamplingParams) -> list[str]:
        import torch

        batch = self.prefix_cache.inputs(sequences, params.max_new_tokens)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode(), batch.attending():
            if params.n > 1:
                batch = batch.for_samples(self.hf_model, params.n)
            if self.drop_finished:
                new_tokens = self._sample(batch, params)
                if new_tokens is not None:
                    texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                    return [cut_at_stop(text, params.stop).strip() for text in texts]
            if batch.cache is not None:
                kwargs["cache"] = batch.cache
            if batch.positions is not None:
                kwargs["position_ids"] = batch.positions
            output = self.hf_model.generate(input_ids=batch.ids, attention_mask=batch.mask, **kwargs)
        new_tokens = output[:, batch.ids.shape[1]:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(text, params.stop).strip() for text in texts]

    def _sample(self, batch: BatchInputs, params: SamplingParams) -> list[list[int]] | None:
        """Generation in which finished rows leave the batch (:mod:`.decode`); None for a
        model whose cache cannot drop rows, which then runs ``generate()``."""
        from transformers import DynamicCache

        model = self.hf_model
        cache = batch.cache if batch.cache is not None else DynamicCache(config=model.config)
        if not decode.supports(cache):
            return None
        positions = batch.positions if batch.positions is not None \
            else (batch.mask.cumsum(-1) - 1).clamp(min=0)
        return decode.sample(model, self.tokenizer, batch.ids, batch.mask, positions, cache,
                             batch.cached, params)

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
        encoded = self.encode(prompts, "score")
        # Each option tokenised with its prompt (see render.split_options); the texts share
        # their prompt, so the prefix cache tokenises each prompt's head once.
        joined = self.encode([prompt.with_suffix(option)
                              for prompt, opts in zip(prompts, options, strict=True) for option in opts],
                             "score")
        jobs: list[_ScoreJob] = []
        start = 0
        for index, (prompt_ids, opts) in enumerate(zip(encoded, options, strict=True)):
            if not opts:
                continue
            context, option_ids = split_options(prompt_ids, joined[start:start + len(opts)])
            start += len(opts)
            # Every option keeps at least one token of its own to be scored.
            shared = common_prefix(option_ids)[:min(len(ids) for ids in option_ids) - 1]
            context = context + shared
            if not context:
                raise CaitoolError("cannot score options after an empty prompt")
            jobs.append(_ScoreJob(index, context, shared,
                                  [ids[len(shared):] for ids in option_ids]))

        def run(batch: list[int]) -> list[list[float]]:
            return self._score_batch([jobs[i] for i in batch])

        def shrink(batch_size: int) -> None:
            self.max_batch_size = batch_size

        values = run_in_batches([len(j.context) for j in jobs], self.max_batch_size, run, shrink=shrink,
                                single_row_error="out of memory scoring a single prompt; use a shorter "
                                                 "prompt or a smaller model")
        scores: list[list[float]] = [[] for _ in prompts]
        for job, job_scores in zip(jobs, values, strict=True):
            scores[job.prompt_index] = job_scores
        return [OptionScores(s) for s in scores]

    def _score_batch(self, jobs: list[_ScoreJob]) -> list[list[float]]:
        """One batch of scoring: the contexts through the model once, starting from the
        cached few-shot prefix when they share one (as generation does), then the options'
        remaining tokens in one short pass from the contexts' cache."""
        import torch

        weights = self._weights("score")
        model = weights.model
        longest = max(len(tail) for job in jobs for tail in job.tails)
        # The shared tokens end the context: their log-probabilities are read from the
        # positions just before its end, so keep that many more positions' logits.
        keep = max(len(job.shared) for job in jobs) + 1
        batch = weights.prefix_cache.inputs([job.context for job in jobs], longest - 1, own=keep)
        mask, cached = batch.mask, batch.cached
        positions = batch.positions if batch.positions is not None \
            else (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode(), batch.attending():
            out = model(input_ids=batch.ids[:, cached:], attention_mask=mask,
                        position_ids=positions[:, cached:],
                        use_cache=longest > 1 or batch.cache is not None,
                        **forward_kwargs(model, keep, batch.cache))
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
            cache = batch.cache if batch.cache is not None else (
                getattr(out, "cache", None) or getattr(out, "past_key_values", None))
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
            tail_ids, tail_mask = tail_ids.to(mask.device), tail_mask.to(mask.device)
            # Positions continue from each row's last one (after the prefix, when cached).
            starts = (positions[:, -1] + 1).repeat_interleave(per_prompt)
            tail_positions = starts[:, None] + torch.arange(width, device=mask.device)[None, :]
            full_mask = torch.cat([mask.repeat_interleave(per_prompt, dim=0), tail_mask], dim=-1)
            logits = model(input_ids=tail_ids, attention_mask=full_mask,
                           position_ids=tail_positions, use_cache=True,
                           **forward_kwargs(model, width, cache)).logits
            rest = torch.log_softmax(logits[:, -width:].float(), dim=-1)
            for row, job in enumerate(jobs):
                for k, tail in enumerate(job.tails):
                    for offset, token in enumerate(tail[1:]):
                        results[row][k] += float(rest[row * per_prompt + k, offset, token])
        return results

    def close(self) -> None:
        self._loaded.clear()


@dataclass
class _Weights:
    model: Any
    prefix_cache: PrefixCache


@dataclass
class _ScoreJob:
    prompt_index: int
    context: list[int]          # prompt tokens, then the tokens all options start with
    shared: list[int]           # the tokens all options start with
    tails: list[list[int]]      # each option's own tokens (at least one)

