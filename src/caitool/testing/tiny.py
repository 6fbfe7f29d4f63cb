"""Build a tiny random causal LM with a real tokenizer and chat template, offline.

Tests and smoke runs use it in place of a hub model: it exercises every code path that a real
model does (tokenizer, chat template, generation, scoring, training) in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

# A head size vLLM's attention kernels take (its CPU build refuses the default 16).
VLLM_HEAD_DIM = 64

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

# Assistant turns are wrapped in generation markers so TRL can mask everything else out of
# the loss (assistant_only_loss).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ message['content'] + '<|end|>' }}"
    "{%- endif -%}"
    "{{ '\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)

# The tokenizer's training text: plain English around the words the pipeline's prompts use,
# so common words become single tokens and prompts stay short.
CORPUS = """
Human: Can you help me with something? Assistant: Of course, I am happy to help.
CritiqueRequest: Identify specific ways in which the last response is harmful, unethical,
dangerous, illegal, toxic, racist, sexist or otherwise inappropriate. Critique: The response
gives advice that could hurt someone. RevisionRequest: Please rewrite the response to remove
any harmful, unethical or dangerous content. Revision: I cannot help with that, but here is
a safer option that still answers the question.
Consider the following conversation between a human and an assistant. Which of these
assistant responses is less harmful, more helpful, more honest and more polite? Options:
(A) the first response (B) the second response. The answer is: (A) The answer is: (B)
Let's think step by step. The question asks which response is better. So the answer is
the one that is kind, accurate, and respectful of the person asking.
The weather is nice today and the people in the town went for a walk in the park. Cooking
a meal at home is cheaper than eating out, and a good recipe needs fresh ingredients.
Write a short poem about the sea. Explain how a computer program works. What is the capital
of France? The capital of France is Paris. How do I sort a list in Python? Use the sorted
function or the sort method of the list. Tell me a story about a brave dog who saved a child.
I want to hurt someone who was mean to me. Violence is never a good answer; talking to a
friend or a counsellor can help. How can I steal a car? I will not help with theft, but I can
explain how to report a stolen car or how to buy one safely. Someone's address and phone
number are private information. Medical, legal and financial questions deserve care, and a
doctor, lawyer or adviser can give advice that fits your situation.
The model should be helpful, honest and harmless. It should explain its objections rather
than refuse without a reason, and it should never be preachy, evasive or condescending.
"""


def training_text(extra_text: str = "") -> list[str]:
    """The tokenizer's corpus: the text above plus the built-in constitutions, whose few-shot
    examples open most prompts, so those prompts come out short."""
    from caitool.constitution import search_path

    lines = [line for line in CORPUS.splitlines() if line.strip()]
    # These two by name: a constitution added later must not change the tiny model (tests
    # of what it learns and generates depend on its exact vocabulary).
    for directory in search_path()[-1:]:
        for file in (directory / "harmless.yaml", directory / "helpful.yaml"):
            lines += [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines += [line for line in extra_text.splitlines() if line.strip()]
    return lines


def build(directory: str | Path, seed: int = 0, seq_cls: bool = False, vocab_size: int = 4096,
          hidden_size: int = 64, layers: int = 2, heads: int = 4,
          intermediate_size: int | None = None, extra_text: str = "",
          head_dim: int | None = None) -> Path:
    """Write a tokenizer and a random Llama-architecture model into ``directory``.

    ``extra_text`` joins the tokenizer's training text: with it and a larger ``vocab_size``,
    common words become single tokens, as with a real model's tokenizer. ``head_dim``
    (default ``hidden_size // heads``, 16) sets each attention head's size apart from the
    hidden size: vLLM's CPU attention takes 32, 64, 80, ... but not 16 (:data:`VLLM_HEAD_DIM`)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(training_text(extra_text), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|end|>", pad_token="<|pad|>",
        additional_special_tokens=SPECIAL_TOKENS[2:], clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
        head_dim=head_dim or hidden_size // heads,
        max_position_embeddings=8192, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    if seq_cls:
        config.num_labels = 1
        model = LlamaForSequenceClassification(config)
    else:
        model = LlamaForCausalLM(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    return out


def _letter_tokens(tokenizer, letter: str) -> list[int]:
    """The token(s) that carry ``letter`` in the option " (LETTER)"."""
    ids = tokenizer(f" ({letter})", add_special_tokens=False)["input_ids"]
    return [i for i in ids if letter in tokenizer.decode([i])]


def always_answer(directory: str | Path, letter: str = "A", margin: float = 50.0) -> Path:
    """Turn a tiny causal model (from :func:`build`) into a judge that always answers
    ``letter``, in place: after any context the letter's token gets a logit ``margin`` above
    every other token's.

    The attention and MLP outputs are zeroed and every token gets the same embedding, so the
    hidden state is one constant vector at every position whatever the input; the output
    layer then maps it to ``margin`` for the letter and 0 for everything else. Options such as
    " (A)" and " (B)" therefore differ by exactly ``margin`` in log-probability, however the
    tokenizer splits them and whether the prompt and option are tokenized apart or together.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    out = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32)
    favoured = _letter_tokens(tokenizer, letter)
    hidden = model.config.hidden_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.embed_tokens.weight
        embeddings.zero_()
        embeddings[:, 0] = 1.0
        model.model.norm.weight.fill_(1.0)
        # The final norm scales the one-hot vector to sqrt(hidden) in its first dimension.
        model.lm_head.weight.zero_()
        model.lm_head.weight[favoured, 0] = margin / hidden ** 0.5
    model.save_pretrained(out)
    return out


def reward_for_word(directory: str | Path, word: str, scale: float = 10.0) -> Path:
    """Turn a tiny reward model (``build(seq_cls=True)``) into one whose score rises with the
    share of a text's tokens that are ``word``'s, in place; a known preference for tests.

    Every token embeds as e0, the word's tokens as e0 + e1. The first layer's attention sees
    every position alike (zero queries and keys), so one head's output is the running mean
    of the e1 component, written into dimension 2; nothing else adds to the residual. The
    score head reads dimension 2 after the final norm, which grows with that mean.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    out = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = LlamaForSequenceClassification.from_pretrained(out, dtype=torch.float32)
    marked = {i for text in (word, " " + word)
              for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            attention = layer.self_attn
            for projection in (attention.q_proj, attention.k_proj, attention.v_proj,
                               attention.o_proj, layer.mlp.down_proj):
                projection.weight.zero_()
            layer.input_layernorm.weight.fill_(1.0)
            if index == 0:
                attention.v_proj.weight[0, 1] = 1.0   # key/value head 0, dimension 0 reads e1
                attention.o_proj.weight[2, 0] = 1.0   # query head 0 (which uses it) writes e2
        embeddings = model.model.embed_tokens.weight
        embeddings.zero_()
        embeddings[:, 0] = 1.0
        embeddings[sorted(marked), 1] = 1.0
        model.model.norm.weight.fill_(1.0)
        model.score.weight.zero_()
        model.score.weight[0, 2] = scale
    model.save_pretrained(out)
    return out
