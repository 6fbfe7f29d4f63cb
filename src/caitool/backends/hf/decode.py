"""Sampling loop in which a row that has finished leaves the batch.

``model.generate`` runs a batch until its longest row ends, computing every finished row
along with it. Real models stop at very different lengths (a refusal in a dozen tokens, an
explanation at the token limit), so most of a batch's late steps would be spent on rows
whose text is already complete. Here each step runs only the rows still going: a row that
produces an end-of-sequence token or completes a stop string is taken out of the inputs and
out of the key/value cache (``batch_select_indices``), and the next step is that much
cheaper. Sampling uses transformers' own logits processors and stop-string criterion, with
the settings ``generate()`` would apply.
"""

from __future__ import annotations

from typing import Any

from caitool.backends.base import SamplingParams
from caitool.backends.hf.batching import forward_kwargs


def supports(cache: Any) -> bool:
    """Whether rows can be taken out of this cache (every layer of a plain or shared-prefix
    cache can; a model with another kind of cache keeps ``generate()``)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(hasattr(layer, "batch_select_indices") for layer in layers)


def end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ends = getattr(model.generation_config, "eos_token_id", None)
    ends = [] if ends is None else ([ends] if isinstance(ends, int) else list(ends))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ends:
        ends.append(tokenizer.eos_token_id)
    return ends


def _processors(params: SamplingParams) -> Any:
    from transformers.generation import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.temperature > 0:
        if params.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            processors.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            processors.append(TopPLogitsWarper(params.top_p))
    return processors


def sample(model: Any, tokenizer: Any, ids: Any, mask: Any, positions: Any, cache: Any,
           cached: int, params: SamplingParams) -> list[list[int]]:
    """The new tokens of every row (up to and including its end-of-sequence token), from
    left-padded ``ids``/``mask``/``positions`` whose first ``cached`` columns ``cache``
    already holds. Runs inside ``torch.inference_mode`` and the batch's attention context."""
    import torch

    rows = ids.shape[0]
    ends = torch.tensor(end_token_ids(model, tokenizer), device=ids.device)
    processors = _processors(params)
    stop = None
    if params.stop:
        from transformers.generation import StopStringCriteria

        stop = StopStringCriteria(tokenizer, list(params.stop))
    greedy = params.temperature <= 0
    # What each running row has seen (the repetition penalty and stop strings read it).
    seen = ids
    active = torch.arange(rows, device=ids.device)
    # Every row's new tokens, -1 where none was produced (after its end).
    produced = torch.full((rows, max(1, params.max_new_tokens)), -1, dtype=torch.long,
                          device=ids.device)
    step_ids = ids[:, cached:]
    step_positions = positions[:, cached:]
    for step in range(params.max_new_tokens):
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=step_positions,
                    use_cache=True, **forward_kwargs(model, 1, cache))
        scores = processors(seen, out.logits[:, -1].float())
        if greedy:
            tokens = scores.argmax(-1)
        else:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(-1)
        # Kept, end-of-sequence token included, as generate() keeps them: decoding skips
        # special tokens and the caller cuts the text at a stop string.
        produced[active, step] = tokens
        ended = torch.isin(tokens, ends)
        seen = torch.cat([seen, tokens[:, None]], dim=-1)
        finished = ended | stop(seen, None) if stop is not None else ended
        keep = (~finished).nonzero().squeeze(-1)
        if keep.numel() == 0:
            break
        step_positions = step_positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        if keep.numel() < active.numel():
            cache.batch_select_indices(keep)
            active, seen, mask = active[keep], seen[keep], mask[keep]
            step_positions, tokens = step_positions[keep], tokens[keep]
        step_ids = tokens[:, None]
    return [[token for token in row if token >= 0] for row in produced.tolist()]
