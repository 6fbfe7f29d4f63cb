"""Feeding prompts to the model in batches: longest first, left-padded, and backing off to
smaller batches when the device runs out of memory.

Sorting by length keeps the padding in each batch small. Running out of memory is not
fatal: the failed batch and every later one go through at half the size, and the caller
keeps that size for its later calls, because memory that ran out once will run out again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from caitool.errors import CaitoolError

Result = TypeVar("Result")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # CPU and MPS allocators raise a plain RuntimeError.
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower())


def run_in_batches(lengths: list[int], size: int, run: Callable[[list[int]], list[Result]], *,
                   shrink: Callable[[int], None], single_row_error: str) -> list[Result]:
    """``run(indices)`` over batches of at most ``size`` items, longest first; its results
    (one per index) in input order. On running out of memory the batch size halves for the
    failed batch and all later ones, and ``shrink`` is told the new size; a single item that
    does not fit raises ``CaitoolError(single_row_error)``."""
    import torch

    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    pending = [order[start:start + size] for start in range(0, len(order), size)]
    results: list[Any] = [None] * len(lengths)
    while pending:
        batch = pending.pop(0)
        try:
            outputs = run(batch)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not is_out_of_memory(exc):
                raise
            if len(batch) == 1:
                raise CaitoolError(single_row_error) from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = max(1, len(batch) // 2)
            shrink(size)
            pending = [b[i:i + size] for b in [batch, *pending] for i in range(0, len(b), size)]
            continue
        for index, output in zip(batch, outputs, strict=True):
            results[index] = output
    return results


def pad_left(sequences: list[list[int]], pad_id: int, device: Any):
    """``(ids, mask)`` tensors, padded on the left so that every row ends at its last token,
    where generation continues."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in sequences])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    return ids.to(device), mask.to(device)


def forward_kwargs(model: Any, keep: int, cache: Any = None) -> dict[str, Any]:
    """Ask for logits at the last ``keep`` positions only (over a long few-shot prompt the
    full logits tensor, positions x vocabulary, would dwarf the activations), and pass a
    KV cache under whichever name this model's forward takes."""
    params = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any] = {"logits_to_keep": keep} if "logits_to_keep" in params else {}
    if cache is not None:
        kwargs["cache" if "cache" in params else "past_key_values"] = cache
    return kwargs
