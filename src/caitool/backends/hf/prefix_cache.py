"""The few-shot block that critique and revision prompts open with, handled once.

Those prompts all start with the same block, often most of each prompt. :class:`PrefixCache`
tokenises that text head once and reuses its tokens (:meth:`PrefixCache.tokenize`), runs the
model over it once and keeps its key/value cache (:meth:`PrefixCache.lookup`), and builds
each batch's inputs so that the rows run only their own tokens (:meth:`PrefixCache.inputs`):
attending to one copy of the prefix for the whole batch (``shared_prefix``) where a check
on the model shows that this gives its own results, or else to a copy per row. The n samples
of a prompt likewise run the prompt once (:meth:`BatchInputs.for_samples`).
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass
from typing import Any

from caitool.backends.hf.batching import forward_kwargs, pad_left

# Shorter shared prefixes are not worth a cache of their own.
MIN_PREFIX_TOKENS = 32
MIN_HEAD_CHARS = 128
# Distinct prompt heads whose tokens are remembered (one per few-shot block in use).
HEAD_CACHE_SIZE = 8
# Prefixes whose key/value caches are kept: one per few-shot block in use at once (eval and
# an ablation mix constitutions; each block is a few thousand tokens' cache at most).
PREFIX_CACHE_SIZE = 4
# Tokens of the prefix on which split attention is checked against the model's own.
CHECK_TOKENS = 32


@dataclass
class CachedPrefix:
    """Token ids shared by the start of every row, and the model's cache after them."""

    ids: list[int]
    cache: Any

    def repeated(self, rows: int) -> Any:
        """A copy of the cache for a batch of ``rows`` (the model extends it in place)."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache


@dataclass
class BatchInputs:
    """What generation starts from for one batch of token sequences."""

    ids: Any                # left-padded; with a copied prefix, the prefix's tokens first
    mask: Any
    positions: Any = None   # None: count the unmasked tokens, as generate() does itself
    cache: Any = None
    cached: int = 0         # tokens at the start of every row that ``cache`` already holds
    split: Any = None       # the cache when it keeps the prefix once for the whole batch

    def attending(self) -> contextlib.AbstractContextManager:
        """Where the model must run for this batch: inside the split attention's context
        when the batch uses it."""
        if self.split is None:
            return contextlib.nullcontext()
        from caitool.backends.hf import shared_prefix

        return shared_prefix.active(self.split)

    def for_samples(self, model: Any, n: int) -> BatchInputs:
        """The inputs for ``n`` samples of each row, which share all of its prompt: the
        prompts run once, then their rows and cache are repeated (generate() can repeat
        neither a cache nor a greedy row). Runs inside :meth:`attending`."""
        from transformers import DynamicCache

        ids, mask, positions, cache, cached = (self.ids, self.mask, self.positions, self.cache,
                                               self.cached)
        # generate() starts from the last token of each row; the cache takes the rest.
        if ids.shape[1] - cached >= 2:
            if cache is None:
                cache = DynamicCache(config=model.config)
            if positions is None:
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
            model(input_ids=ids[:, cached:-1], attention_mask=mask[:, :-1],
                  position_ids=positions[:, cached:-1], cache=cache, use_cache=True,
                  **forward_kwargs(model, 1))
            cached = ids.shape[1] - 1
        if cache is not None:
            cache.batch_repeat_interleave(n)
        return BatchInputs(ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0),
                           None if positions is None else positions.repeat_interleave(n, 0),
                           cache, cached, self.split)


def common_prefix(sequences: list[list[int]]) -> list[int]:
    prefix: list[int] = []
    for column in zip(*sequences, strict=False):
        if any(token != column[0] for token in column):
            break
        prefix.append(column[0])
    return prefix


class PrefixCache:
    """A model's shared-prefix state: the text heads already tokenised, the last prefix run
    through the model, and whether split attention works for the model."""

    def __init__(self, tokenizer: Any, model: Any, device: str, enabled: bool = True,
                 path: str | None = None):
        """``path``: the model's directory, whose prefixes the on-disk store keeps
        (:mod:`.prefix_store`); None keeps them in this process only."""
        self.tokenizer = tokenizer
        self.path = path
        self._fingerprint: str | None = None
        self.model = model
        self.device = device
        # Off only to measure what sharing the few-shot prefix saves.
        self.enabled = enabled
        self.heads: dict[tuple[str, bool], list[int] | None] = {}
        # Most recently used last.
        self.prefixes: list[CachedPrefix] = []
        # Whether attention over a prefix kept once per batch works for this model (checked
        # on first use); None until then.
        self.split_attention: bool | None = None
        self._markers: list[str] | None = None
        self._cache_repeats = True

    # -- text heads ------------------------------------------------------------------------

    def tokenize(self, texts: list[str], add_special: bool) -> list[list[int]]:
        """The same ids as tokenising each text whole, with a shared head tokenised once."""
        if self.enabled:
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
        for (head, special), ids in reversed(self.heads.items()):
            if special == add_special and common.startswith(head):
                return None if ids is None else (len(head), ids)
        if len(common) < MIN_HEAD_CHARS:
            return None
        # A batch of one shares its whole text: narrow it to what it shares with the last
        # head seen, which is the few-shot block once two batches have gone through.
        for head, special in reversed(self.heads):
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
        self.heads[(head, add_special)] = ids
        while len(self.heads) > HEAD_CACHE_SIZE:
            self.heads.pop(next(iter(self.heads)))
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

    # -- the model's cache of the prefix ---------------------------------------------------

    @property
    def prefix(self) -> CachedPrefix | None:
        """The prefix used last."""
        return self.prefixes[-1] if self.prefixes else None

    def lookup(self, sequences: list[list[int]], own: int = 1) -> CachedPrefix | None:
        """The longest cached prefix every sequence starts with (each keeping at least ``own``
        tokens of its own), computing a longer one when the batch shares one."""
        if not (self.enabled and self._cache_repeats):
            return None
        limit = min(len(s) for s in sequences) - own
        best = None
        for known in self.prefixes:
            if (len(known.ids) <= limit and (best is None or len(known.ids) > len(best.ids))
                    and all(s[:len(known.ids)] == known.ids for s in sequences)):
                best = known
        if best is not None and len(sequences) == 1:
            return self._used(best)
        shared = common_prefix(sequences)[:max(limit, 0)]
        if best is not None and len(shared) - len(best.ids) < MIN_PREFIX_TOKENS:
            return self._used(best)
        if best is None and len(sequences) == 1 and self.prefixes:
            # A batch of one shares its whole prompt with itself: narrow it to what it shares
            # with the last prefix, the few-shot block that the next prompts will share too.
            narrowed = common_prefix([self.prefixes[-1].ids, shared])
            if len(narrowed) >= MIN_PREFIX_TOKENS:
                shared = narrowed
        if len(shared) < MIN_PREFIX_TOKENS:
            return None
        cache = self._computed(shared)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            # A model whose cache cannot be repeated over a batch runs without reuse.
            self._cache_repeats = False
            return None
        self.prefixes.append(CachedPrefix(shared, cache))
        del self.prefixes[:-PREFIX_CACHE_SIZE]
        return self.prefixes[-1]

    def _computed(self, shared: list[int]) -> Any:
        """The model's cache after ``shared``: from the on-disk store when it holds it, else
        one pass of the model (then stored)."""
        import torch

        from caitool.backends.hf import prefix_store, shared_prefix

        key = self._store_key()
        if key is not None:
            stored = prefix_store.load(key, shared, self.model.config, self.device)
            if stored is not None:
                return stored
        with torch.inference_mode():
            ids = torch.tensor([shared], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, use_cache=True, **forward_kwargs(self.model, 1))
        cache = getattr(out, "cache", None)
        layers = shared_prefix.prefix_layers(cache)
        if key is not None and layers is not None:
            prefix_store.save(key, shared, layers)
        return cache

    def _checked_split_attention(self, prefix: CachedPrefix) -> bool:
        """Whether split attention reproduces the model's forward pass: the verdict stored
        for this model, else the check run here (and its verdict stored)."""
        from caitool.backends.hf import prefix_store, shared_prefix

        if shared_prefix.prefix_layers(prefix.cache) is None:
            return False
        key = self._store_key()
        if key is not None:
            # The attention kernel can be switched after loading; the verdict is per kernel.
            key = f"{key}:{getattr(self.model.config, '_attn_implementation', None)}"
        stored = None if key is None else prefix_store.load_verdict(key)
        if stored is not None:
            return stored
        # Decided no first: a check that fails with an error is not run again.
        self.split_attention = False
        agrees = shared_prefix.agrees(self.model, prefix.ids[:CHECK_TOKENS])
        if key is not None:
            prefix_store.save_verdict(key, agrees)
        return agrees

    def _store_key(self) -> str | None:
        """The model's key in the on-disk store, or None where it has none; taken on first
        use, so after any change made to the weights since loading."""
        from caitool.backends.hf import prefix_store

        if self.path is None or not prefix_store.enabled():
            return None
        if self._fingerprint is None:
            self._fingerprint = prefix_store.model_fingerprint(self.path, self.model) or ""
        return self._fingerprint or None

    def _used(self, prefix: CachedPrefix) -> CachedPrefix:
        self.prefixes.remove(prefix)
        self.prefixes.append(prefix)
        return prefix

    def inputs(self, sequences: list[list[int]], new_tokens: int, own: int = 1) -> BatchInputs:
        """Inputs for running up to ``new_tokens`` more after each of ``sequences``, starting
        from the cached prefix when they share one (each row keeping ``own`` tokens of its
        own, whose logits are then computed)."""
        import torch

        prefix = self.lookup(sequences, own)
        pad = self.tokenizer.pad_token_id
        if prefix is None:
            return BatchInputs(*pad_left(sequences, pad, self.device))
        shared = len(prefix.ids)
        tail_ids, tail_mask = pad_left([s[shared:] for s in sequences], pad, self.device)
        split = self._split_cache(prefix, tail_ids.shape[1] + new_tokens)
        if split is not None:
            # Rows hold their own tokens only; positions continue after the prefix.
            positions = shared + (tail_mask.cumsum(-1) - 1).clamp(min=0)
            return BatchInputs(tail_ids, tail_mask, positions, cache=split, split=split)
        # Rows are the shared prefix, then padding, then their own tokens; the mask hides the
        # padding and positions count only unmasked tokens, so each row sees exactly its own
        # prompt.
        head = torch.tensor(prefix.ids, dtype=torch.long, device=tail_ids.device)
        ids = torch.cat([head.expand(len(sequences), -1), tail_ids], dim=1)
        mask = torch.cat([torch.ones_like(ids[:, :shared]), tail_mask], dim=1)
        return BatchInputs(ids, mask, cache=prefix.repeated(len(sequences)), cached=shared)

    def _split_cache(self, prefix: CachedPrefix, capacity: int) -> Any:
        """A cache that keeps ``prefix`` once for the whole batch, or None where the model's
        attention cannot use one. The first prefix decides for the model: split attention
        is used only if it reproduces the model's own forward pass on it."""
        from caitool.backends.hf import shared_prefix

        if self.split_attention is None:
            self.split_attention = self._checked_split_attention(prefix)
        if not self.split_attention:
            return None
        layers = shared_prefix.prefix_layers(prefix.cache)
        return None if layers is None else shared_prefix.SharedPrefixCache(layers, capacity)
