"""A tiny judge that prefers whichever response contains a given word: a known preference,
read from real option log-probabilities, for testing training on direct AI feedback.

It is a hand-set transformer over the comparison prompt's layout (``(A) [[[first]]]`` then
``(B) [[[second]]]``, then the answer cue), in the chat format, with a constitution that has
no few-shot comparisons (their letters would read as the options'):

* layer 1: each of the word's tokens attends to the option letters before it (the letter
  tokens alone, equally) and reads +1 for (A), -1 for (B): a word inside the first response
  sees (A) only (+1); one inside the second sees (A) and (B) (0);
* layer 2: every position attends to the word's tokens (equally) and reads +1 for one
  inside (A) and -1 for one inside (B); with no such token it reads about 0;
* the output layer turns that into the letter (A)'s logit minus (B)'s.

So P(A) is high when only the first response has the word, low when only the second has it,
and one half when both or neither do, whatever the order: judged in both orders and
averaged, the response with the word wins. The rotary position encoding is slowed until
position no longer matters, so the attention is by content alone.
"""

from __future__ import annotations

from pathlib import Path

# Residual dimensions. Every token embeds as CONST plus exactly one of the others, so all
# have the same norm and RMSNorm scales them alike.
CONST, WORD, LETTER_A, LETTER_B, PLAIN, SIDE, VERDICT = range(7)
# Where a head's query and key live: the slowest rotary pair (index 7 of 16), whose rotation
# over thousands of positions is negligible at this base.
QK = 7
ROPE_THETA = 1e9
SIDE_SCALE = 0.1   # kept small so that the side it writes barely changes a token's norm


def prefers_word(directory: str | Path, word: str, margin: float = 1.0) -> Path:
    """Turn a tiny causal model (:func:`caitool.testing.tiny.build`, default sizes) into a
    judge preferring the response that contains ``word``, in place. ``margin`` scales the
    letter logits: at 1, a response with the word against one without gets P > 0.99."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    from caitool.testing.tiny import _letter_tokens

    out = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = AutoConfig.from_pretrained(out)
    config.rope_parameters = {"rope_type": "default", "rope_theta": ROPE_THETA}
    model = LlamaForCausalLM(config)
    head_dim = config.head_dim
    scale = 1 / (2 / config.hidden_size) ** 0.5    # RMSNorm of a CONST + one-feature token
    marked = sorted({i for text in (word, " " + word)
                     for i in tokenizer(text, add_special_tokens=False)["input_ids"]})
    letters = {"A": _letter_tokens(tokenizer, "A"), "B": _letter_tokens(tokenizer, "B")}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
        embeddings = model.model.embed_tokens.weight
        embeddings[:, CONST] = 1.0
        embeddings[:, PLAIN] = 1.0
        for ids, feature in ((marked, WORD), (letters["A"], LETTER_A),
                             (letters["B"], LETTER_B)):
            embeddings[ids, PLAIN] = 0.0
            embeddings[ids, feature] = 1.0

        # Scores: (q * scale) * (k * scale) / sqrt(head_dim) = c^2 * scale^2 / 4.
        def focus(score: float) -> float:
            return (score * head_dim ** 0.5) ** 0.5 / scale

        first, second = model.model.layers
        c = focus(40.0)
        first.self_attn.q_proj.weight[QK, WORD] = c
        first.self_attn.k_proj.weight[QK, LETTER_A] = c
        first.self_attn.k_proj.weight[QK, LETTER_B] = c
        first.self_attn.v_proj.weight[0, LETTER_A] = SIDE_SCALE / scale
        first.self_attn.v_proj.weight[0, LETTER_B] = -SIDE_SCALE / scale
        first.self_attn.o_proj.weight[SIDE, 0] = 1.0

        c = focus(24.0)
        second.self_attn.q_proj.weight[QK, CONST] = c
        second.self_attn.k_proj.weight[QK, WORD] = c
        # +1 for a word token inside (A) (side 0.1), -1 inside (B) (side 0).
        second.self_attn.v_proj.weight[0, SIDE] = 2 / (SIDE_SCALE * scale)
        second.self_attn.v_proj.weight[0, WORD] = -1 / scale
        second.self_attn.o_proj.weight[VERDICT, 0] = 1.0

        for token in letters["A"]:
            model.lm_head.weight[token, VERDICT] = margin
        for token in letters["B"]:
            model.lm_head.weight[token, VERDICT] = -margin
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return out
