"""In-process transformers backend: CPU or GPU, left-padded length-sorted batches.

Critique and revision prompts all open with the same few-shot block, often most of each
prompt. The backend exploits that: the block's text is tokenised once and its tokens reused
(``_split_head``); the model runs it once and keeps its key/value cache (``_prefix_for``);
and each batch that starts with it attends to that one copy (``_shared_prefix``), or, for a
model where that does not apply, to a copy per row. Each row then runs only its own tokens,
and the n samples of a prompt run the prompt once.
"""

from __future__ import annotations

import copy
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


# Shorter shared prefixes are not worth a cache of their own.
MIN_PREFIX_TOKENS = 32
MIN_HEAD_CHARS = 128
# Distinct prompt heads whose tokens are remembered (one per few-shot block in use).
HEAD_CACHE_SIZE = 8


@dataclass
class _Prefix:
    """Token ids shared by the start of every row, and the model's cache after them."""

    ids: list[int]
    cache: Any

    def repeated(self, rows: int) -> Any:
        """A copy of the cache for a batch of ``rows`` (the model extends it in place)."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # CPU and MPS allocators raise a plain RuntimeError.
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower())


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 64, reuse_prefix: bool = True, **options: Any):
        super().__init__(model, **options)
        check_model_path(model)
        self.device_name = device
        self.dtype_name = dtype
        self.max_batch_size = max_batch_size
        # Off only to measure what sharing the prompts' common prefix saves.
        self.reuse_prefix = reuse_prefix
        self._model = None
        self._tokenizer = None
        self._heads: dict[tuple[str, bool], list[int] | None] = {}
        self._prefix: _Prefix | None = None
        self._markers: list[str] | None = None
        self._cache_repeats = True
        # Whether attention over a prefix kept once per batch works for this model (checked
        # on first use); None until then.
        self._split_attention: bool | None = None

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
            return self._tokenize(texts, add_special=not chat[0]) if texts else []
        return [self.tokenizer(t, add_special_tokens=not c)["input_ids"] for t, c in zip(texts, chat)]

    def _tokenize(self, texts: list[str], add_special: bool) -> list[list[int]]:
        """The same ids as tokenising each text whole, with a shared head tokenised once."""
        if self.reuse_prefix:
            head = self._split_head(texts, add_special)
            if head is not None:
                cut, head_ids = head
                tails = self.tokenizer([t[cut:] for t in texts], add_special_tokens=False)
                return [head_ids + tail for tail in tails["input_ids"]]
        return self.tokenizer(texts, add_special_tokens=add_special)["input_ids"]

    def _split_head(self, texts: list[str], add_special: bool) -> tuple[int, list[int]] | None:
        """A head every text starts with, cut where tokenisation cannot merge across the cut,
        and its token ids; None when there is none worth caching."""
        common = os.path.commonprefix(texts)
        for (head, special), ids in reversed(self._heads.items()):
            if special == add_special and common.startswith(head):
                return None if ids is None else (len(head), ids)
        if len(common) < MIN_HEAD_CHARS:
            return None
        # A batch of one shares its whole text: narrow it to what it shares with the last
        # head seen, which is the few-shot block once two batches have gone through.
        for head, special in reversed(self._heads):
            if special == add_special:
                narrowed = os.path.commonprefix([common, head])
                if len(narrowed) >= MIN_HEAD_CHARS:
                    common = narrowed
                break
        cut = self._safe_cut(common)
        if cut < MIN_HEAD_CHARS:
            return None
        head = common[:cut]
        ids: list[int] | None = self.tokenizer(head, add_special_tokens=add_special)["input_ids"]
        # Check the split on a real text; a tokenizer that merges across it (or adds an end
        # token) keeps whole-text tokenisation for this head.
        whole = self.tokenizer(texts[0], add_special_tokens=add_special)["input_ids"]
        tail = self.tokenizer(texts[0][cut:], add_special_tokens=False)["input_ids"]
        if whole != ids + tail:
            ids = None
        self._heads[(head, add_special)] = ids
        while len(self._heads) > HEAD_CACHE_SIZE:
            self._heads.pop(next(iter(self._heads)))
        return None if ids is None else (cut, ids)

    def _safe_cut(self, text: str) -> int:
        """Where to split ``text`` so that its tokens are the head's followed by the tail's:
        just after the last special token (the tokenizer splits those out before anything
        else), or else at the start of the last line (no pre-tokenizer joins a newline to
        the word that follows it)."""
        if self._markers is None:
            self._markers = [str(t) for t in self.tokenizer.added_tokens_decoder.values() if str(t)]
        # Keep a shared character after the cut: a special token that strips the whitespace
        # after it then strips the same in every text.
        cut = 0
        for marker in self._markers:
            index = text.rfind(marker, 0, len(text) - 1)
            if index >= 0:
                cut = max(cut, index + len(marker))
        if cut:
            return cut
        index = len(text) - 1
        while index > 0:
            index = text.rfind("\n", 0, index)
            if index < 0:
                return 0
            if not text[index + 1].isspace():
                return index + 1
        return 0

    # -- generation ------------------------------------------------------------------------

    def _sorted_batches(self, lengths: list[int], size: int) -> Iterator[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        for start in range(0, len(order), size):
            yield order[start:start + size]

    def _pad_left(self, sequences: list[list[int]]):
        import torch

        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in sequences])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
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
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                if len(batch) == 1:
                    raise CaitoolError("out of memory on a single prompt; lower --max-new-tokens") from None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                # Back off to half the size that failed, for this batch and every later one
                # (and later calls): memory that ran out once will run out again.
                size = max(1, len(batch) // 2)
                self.max_batch_size = size * max(1, params.n)
                pending = [b[i:i + size] for b in [batch, *pending] for i in range(0, len(b), size)]
                continue
            for row, index in enumerate(batch):
                results[index] = texts[row * params.n:(row + 1) * params.n]
        return results

    def _generate_batch(self, sequences: list[list[int]], params: SamplingParams) -> list[str]:
        import torch

        prefix = self._prefix_for(sequences)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        split = cache = positions = None
        cached = 0  # tokens at the start of every row that the cache already holds
        if prefix is None:
            ids, mask = self._pad_left(sequences)
        else:
            shared = len(prefix.ids)
            tail_ids, tail_mask = self._pad_left([s[shared:] for s in sequences])
            split = self._split_cache(prefix, tail_ids.shape[1] + params.max_new_tokens)
            if split is not None:
                # Rows hold their own tokens only; positions continue after the prefix.
                ids, mask, cache = tail_ids, tail_mask, split
                positions = shared + (mask.cumsum(-1) - 1).clamp(min=0)
            else:
                # Rows are the shared prefix, then padding, then their own tokens; the mask
                # hides the padding and positions count only unmasked tokens, so each row
                # sees exactly its own prompt.
                head = torch.tensor(prefix.ids, dtype=torch.long, device=tail_ids.device)
                ids = torch.cat([head.expand(len(sequences), -1), tail_ids], dim=1)
                mask = torch.cat([torch.ones_like(ids[:, :shared]), tail_mask], dim=1)
                cache, cached = prefix.repeated(len(sequences)), shared
        with torch.inference_mode(), self._split_active(split):
            if params.n > 1:
                # n samples of a prompt share all of it: run it once, then repeat its rows
                # and cache (generate() can repeat neither a cache nor a greedy row).
                cache = self._run_prompts(ids, mask, positions, cache, cached)
                if cache is not None:
                    cache.batch_repeat_interleave(params.n)
                ids, mask = ids.repeat_interleave(params.n, 0), mask.repeat_interleave(params.n, 0)
                if positions is not None:
                    positions = positions.repeat_interleave(params.n, 0)
            if cache is not None:
                kwargs["cache"] = cache
            if positions is not None:
                kwargs["position_ids"] = positions
            if params.temperature > 0:
                kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if params.stop:
                kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
            output = self.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new_tokens = output[:, ids.shape[1]:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(text, params.stop).strip() for text in texts]

    def _run_prompts(self, ids, mask, positions, cache, cached: int) -> Any:
        """Fill ``cache`` (a new one if None) with all but the last token of each row, which
        generate() then starts from; positions as generate() would give them."""
        from transformers import DynamicCache

        if ids.shape[1] - cached < 2:
            return cache
        if cache is None:
            cache = DynamicCache(config=self.hf_model.config)
        if positions is None:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
        self.hf_model(input_ids=ids[:, cached:-1], attention_mask=mask[:, :-1],
                      position_ids=positions[:, cached:-1], cache=cache, use_cache=True,
                      **self._last_logits_only())
        return cache

    def _split_cache(self, prefix: _Prefix, capacity: int) -> Any:
        """A cache that keeps ``prefix`` once for the whole batch (see ``_shared_prefix``), or
        None where the model's attention cannot use one."""
        if self._split_attention is None:
            self._split_attention = False
            try:
                from caitool.backends import _shared_prefix
            except ImportError:
                return None
            layers = _shared_prefix.prefix_layers(prefix.cache)
            self._split_attention = layers is not None and _shared_prefix.agrees(
                self.hf_model, prefix.ids[:32])
        if not self._split_attention:
            return None
        from caitool.backends import _shared_prefix

        layers = _shared_prefix.prefix_layers(prefix.cache)
        return None if layers is None else _shared_prefix.SharedPrefixCache(layers, capacity)

    def _split_active(self, cache: Any):
        import contextlib

        if cache is None:
            return contextlib.nullcontext()
        from caitool.backends import _shared_prefix

        return _shared_prefix.active(cache)

    def _prefixed_inputs(self, sequences: list[list[int]]):
        """Inputs for one forward pass over ``sequences`` that starts from the cached shared
        prefix when they have one: ``(ids, mask, positions, cache)``. ``ids`` and
        ``positions`` cover the uncached tokens, left-padded; ``mask`` covers the whole
        sequences; ``cache`` is None when there is no prefix (then nothing is cached)."""
        import torch

        prefix = self._prefix_for(sequences)
        if prefix is None:
            ids, mask = self._pad_left(sequences)
            return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), None
        shared = len(prefix.ids)
        ids, tail_mask = self._pad_left([s[shared:] for s in sequences])
        mask = torch.cat([torch.ones_like(tail_mask[:, :1]).expand(-1, shared), tail_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        return ids, mask, positions, prefix.repeated(len(sequences))

    def _prefix_for(self, sequences: list[list[int]]) -> _Prefix | None:
        """The cached prefix every sequence starts with (each keeping at least one token of
        its own), computing it when the batch shares a long prefix that is not cached yet."""
        if not (self.reuse_prefix and self._cache_repeats):
            return None
        shortest = min(len(s) for s in sequences)
        known = self._prefix
        if known is not None and len(known.ids) < shortest and all(
                s[:len(known.ids)] == known.ids for s in sequences):
            return known
        shared = _common_prefix(sequences)[:shortest - 1]
        if known is not None:
            # As with text heads: what this batch shares with the last prefix is the few-shot
            # block, which the next batch will share too.
            narrowed = _common_prefix([known.ids, shared])
            if len(narrowed) >= MIN_PREFIX_TOKENS:
                shared = narrowed
        if len(shared) < MIN_PREFIX_TOKENS:
            return None
        import torch

        model = self.hf_model
        with torch.inference_mode():
            ids = torch.tensor([shared], dtype=torch.long, device=self.device)
            out = model(input_ids=ids, use_cache=True, **self._last_logits_only())
        cache = getattr(out, "cache", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            # A model whose cache cannot be repeated over a batch runs without reuse.
            self._cache_repeats = False
            return None
        self._prefix = _Prefix(shared, cache)
        return self._prefix

    def _last_logits_only(self) -> dict[str, Any]:
        """The prefix pass only needs the cache: skip the (positions x vocabulary) logits."""
        import inspect

        if not hasattr(self, "_keeps_last"):
            parameters = inspect.signature(self.hf_model.forward).parameters
            self._keeps_last = "logits_to_keep" in parameters
        return {"logits_to_keep": 1} if self._keeps_last else {}

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
        self._prefix = None


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
