"""Attention over a prefix that every row of a batch shares, kept once instead of per row.

transformers' caches hold keys and values per row, so a few-shot block shared by a batch of
B rows is stored B times, and a dynamic cache copies all of it again at every generated
token. Here the prefix's keys and values stay at batch size 1; each row's own tokens go
into a preallocated buffer; and attention combines the two parts (exactly, through their
softmax normalisers). Per generated token the prefix is read once for the whole batch.

It plugs into transformers through its attention registry: the ``sdpa`` entry is wrapped
by a function that does the split attention while a :class:`SharedPrefixCache` is active
(:func:`active`) and otherwise calls the original. Callers must check a model with
:func:`agrees` before relying on it: an architecture whose attention does not go through
the registry, or differs in some other way, simply fails the check.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer

_ACTIVE: contextvars.ContextVar[SharedPrefixCache | None] = contextvars.ContextVar(
    "caitool_shared_prefix", default=None)


class RowsAfterPrefix(DynamicLayer):
    """One layer: the shared prefix (batch 1) and each row's own keys and values, which
    grow in place in a buffer sized for the whole generation."""

    def __init__(self, prefix_keys: torch.Tensor, prefix_values: torch.Tensor, capacity: int):
        super().__init__()
        self.prefix_keys = prefix_keys
        self.prefix_values = prefix_values
        self.capacity = max(1, capacity)
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        shape = (*key_states.shape[:2], self.capacity, key_states.shape[-1])
        self.keys = key_states.new_empty(shape)
        self.values = value_states.new_empty((*value_states.shape[:2], self.capacity,
                                              value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.keys.shape[-2]:
            self._grow(end)
        self.keys[:, :, self.length:end] = key_states
        self.values[:, :, self.length:end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * self.keys.shape[-2])
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_empty((*old.shape[:2], size, old.shape[-1]))
            new[:, :, :self.length] = old[:, :, :self.length]
            setattr(self, name, new)

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        # Masks cover the rows' own tokens only; the prefix is visible to every query.
        return self.length + query_length, 0


class SharedPrefixCache(Cache):
    def __init__(self, prefix_layers: list[tuple[torch.Tensor, torch.Tensor]], capacity: int):
        super().__init__(layers=[RowsAfterPrefix(k, v, capacity) for k, v in prefix_layers])


def prefix_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The per-layer (keys, values) of a prefix computed with a plain dynamic cache, or None
    for a cache of another kind (sliding windows, recurrent state ...)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer or layer.keys is None
                         for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


@contextmanager
def active(cache: SharedPrefixCache) -> Iterator[None]:
    install()
    token = _ACTIVE.set(cache)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def install() -> None:
    """Wrap the registered ``sdpa`` attention once; the wrapper is the original whenever no
    shared-prefix cache is active."""
    original = AttentionInterface()["sdpa"]
    if getattr(original, "shared_prefix_wrapper", False):
        return

    def attention(module, query, key, value, attention_mask, **kwargs):
        cache = _ACTIVE.get()
        if cache is None:
            return original(module, query, key, value, attention_mask, **kwargs)
        layer = cache.layers[module.layer_idx]
        if query.shape[2] > 1:
            # The rows' prompts: many queries per row, for fused kernels. On a CPU, one that
            # also gives the softmax normaliser runs the prefix once for all rows (measured:
            # 1.5 times faster than joining it to each row, at 64 rows of 127 tokens after 553
            # shared ones); elsewhere, the library's kernel over the prefix joined to each row.
            if query.device.type == "cpu" and not kwargs.get("dropout"):
                return _prompt_pass_split(query, key, value, attention_mask, layer,
                                          kwargs.get("scaling"))
            return _with_prefix_joined(original, module, query, key, value, attention_mask,
                                       layer, **kwargs)
        return _one_step(query, key, value, attention_mask, layer, kwargs.get("scaling"))

    attention.shared_prefix_wrapper = True
    AttentionInterface.register("sdpa", attention)


def _with_prefix_joined(original, module, query, key, value, mask, layer, **kwargs):
    """Several new tokens per row (the rows' own prompt tokens): one pass of the library's
    kernel over the prefix joined to each row, made for this layer only and then dropped."""
    rows, queries, own = key.shape[0], query.shape[2], key.shape[2]
    shared = layer.prefix_keys.shape[2]
    keys = torch.cat([layer.prefix_keys.expand(rows, -1, -1, -1), key], dim=2)
    values = torch.cat([layer.prefix_values.expand(rows, -1, -1, -1), value], dim=2)
    if mask is None:
        # No padding: causal over the rows' own tokens.
        mask = torch.ones(queries, own, dtype=torch.bool, device=key.device).tril(own - queries)
        mask = mask[None, None]
    if mask.dtype == torch.bool:
        visible = torch.ones((*mask.shape[:3], shared), dtype=torch.bool, device=mask.device)
    else:
        visible = torch.zeros((*mask.shape[:3], shared), dtype=mask.dtype, device=mask.device)
    mask = torch.cat([visible, mask.expand(*mask.shape[:3], own)], dim=-1)
    return original(module, query, keys, values, mask, **kwargs)


def _prompt_pass_split(query, key, value, mask, layer, scaling):
    """Several new tokens per row, on a CPU: the fused kernel over the shared prefix once, with
    every row's queries in one batch (each sees all of it), and over each row's own tokens
    under its mask; the two merged through their softmax normalisers (log-sum-exp)."""
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    rows, heads, queries, dim = query.shape
    kv_heads, own = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim ** -0.5
    # [rows, kv_heads, group * queries, dim]: the query heads that share a key head together.
    grouped = query.reshape(rows, kv_heads, group * queries, dim)
    flat = grouped.transpose(0, 1).reshape(1, kv_heads, rows * group * queries, dim)
    prefix_out, prefix_norm = flash(flat, layer.prefix_keys, layer.prefix_values, 0.0, False,
                                    scale=scale)[:2]
    prefix_out = prefix_out.reshape(kv_heads, rows, group * queries, dim).transpose(0, 1)
    prefix_norm = prefix_norm.reshape(kv_heads, rows, group * queries).transpose(0, 1)
    if mask is None:
        # No padding: causal over the rows' own tokens.
        mask = torch.ones(queries, own, dtype=torch.bool, device=key.device).tril(own - queries)
        mask = mask[None, None]
    if mask.dtype == torch.bool:
        # The kernel takes an additive mask of the queries' dtype.
        mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill(
            ~mask, float("-inf"))
    own_mask = mask.to(query.dtype).expand(rows, 1, queries, own).repeat(1, 1, group, 1)
    own_out, own_norm = flash(grouped, key, value, 0.0, False, attn_mask=own_mask,
                              scale=scale)[:2]
    top = torch.maximum(prefix_norm, own_norm)
    prefix_weight = torch.exp(prefix_norm - top)[..., None]
    own_weight = torch.exp(own_norm - top)[..., None]
    out = ((prefix_out.float() * prefix_weight + own_out.float() * own_weight)
           / (prefix_weight + own_weight))
    # Attention functions return [rows, tokens, heads, dim].
    return out.reshape(rows, heads, queries, dim).transpose(1, 2).contiguous().to(query.dtype), None


def _one_step(query, key, value, mask, layer, scaling):
    """One new token per row: attention over the shared prefix, computed for all rows in one
    matrix product per key/value head, merged with attention over each row's own tokens."""
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim ** -0.5
    grouped = query.reshape(rows, kv_heads, group, dim)
    # Prefix: [kv_heads, rows * group, prefix length], the prefix read once for all rows.
    flat = grouped.transpose(0, 1).reshape(kv_heads, rows * group, dim)
    prefix_keys, prefix_values = layer.prefix_keys[0], layer.prefix_values[0]
    prefix_scores = torch.matmul(flat, prefix_keys.transpose(-1, -2)).float() * scale
    own_scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale
    if mask is not None:
        last = mask[:, :, -1:, :]
        if last.dtype == torch.bool:
            own_scores = own_scores.masked_fill(~last, float("-inf"))
        else:
            own_scores = own_scores + last.float()
    prefix_top = prefix_scores.amax(-1).reshape(kv_heads, rows, group).transpose(0, 1)
    top = torch.maximum(prefix_top, own_scores.amax(-1))
    prefix_weights = torch.exp(prefix_scores - top.transpose(0, 1).reshape(kv_heads, -1, 1))
    own_weights = torch.exp(own_scores - top[..., None])
    total = (prefix_weights.sum(-1).reshape(kv_heads, rows, group).transpose(0, 1)
             + own_weights.sum(-1))
    prefix_out = torch.matmul(prefix_weights.to(prefix_values.dtype), prefix_values)
    own_out = torch.matmul(own_weights.to(value.dtype), value)
    out = (prefix_out.reshape(kv_heads, rows, group, dim).transpose(0, 1).float()
           + own_out.float()) / total[..., None]
    # Attention functions return [rows, tokens, heads, dim].
    return out.reshape(rows, 1, heads, dim).to(query.dtype), None


def agrees(model: Any, ids: list[int]) -> bool:
    """Whether split attention reproduces the model's own forward pass, on two rows that
    share the first half of ``ids``: their next-token logits after their prompts and after
    one more token, against the same sequences run whole."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa" or len(ids) < 8:
        return False
    half = len(ids) // 2
    prefix, tails = ids[:half], [ids[half:], ids[half:len(ids) - 2]]
    device = model.device
    extra = torch.tensor([[ids[0]], [ids[1]]], device=device)
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prefix], device=device), use_cache=True)
        layers = prefix_layers(getattr(out, "cache", None))
        if layers is None:
            return False
        width = max(len(t) for t in tails)
        tail_ids = torch.tensor([[0] * (width - len(t)) + t for t in tails], device=device)
        tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails],
                                 device=device)
        positions = half + (tail_mask.cumsum(-1) - 1).clamp(min=0)
        cache = SharedPrefixCache(layers, width + 1)
        with active(cache):
            first = model(input_ids=tail_ids, attention_mask=tail_mask, position_ids=positions,
                          cache=cache, use_cache=True).logits[:, -1]
            step_mask = torch.cat([tail_mask, torch.ones_like(tail_mask[:, :1])], dim=1)
            second = model(input_ids=extra, attention_mask=step_mask,
                           position_ids=positions[:, -1:] + 1, cache=cache,
                           use_cache=True).logits[:, -1]
        whole = [prefix + t for t in tails]
        full_width = max(len(s) for s in whole)
        full_ids = torch.tensor([[0] * (full_width - len(s)) + s for s in whole], device=device)
        full_mask = (torch.arange(full_width, device=device)[None, :]
                     >= torch.tensor([full_width - len(s) for s in whole], device=device)[:, None])
        full_mask = full_mask.long()
        full_positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
        expect_first = model(input_ids=full_ids, attention_mask=full_mask,
                             position_ids=full_positions).logits[:, -1]
        full_ids = torch.cat([full_ids, extra], dim=1)
        full_mask = torch.cat([full_mask, torch.ones_like(full_mask[:, :1])], dim=1)
        full_positions = torch.cat([full_positions, full_positions[:, -1:] + 1], dim=1)
        expect_second = model(input_ids=full_ids, attention_mask=full_mask,
                              position_ids=full_positions).logits[:, -1]
    tolerance = 1e-3 if first.dtype == torch.float32 else 3e-2

    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        a, b = a.float(), b.float()
        return bool((a - b).abs().max() <= tolerance * max(1.0, float(b.abs().max())))

    return close(first, expect_first) and close(second, expect_second)
