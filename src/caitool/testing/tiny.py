"""Build a tiny random causal LM with a real tokenizer and chat template, offline.

Tests and smoke runs use it in place of a hub model: it exercises every code path that a real
model does (tokenizer, chat template, generation, scoring, training) in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

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
    for directory in search_path()[-1:]:
        for file in sorted(directory.glob("*.yaml")):
            lines += [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines += [line for line in extra_text.splitlines() if line.strip()]
    return lines


def build(directory: str | Path, seed: int = 0, seq_cls: bool = False, vocab_size: int = 4096,
          hidden_size: int = 64, layers: int = 2, heads: int = 4,
          intermediate_size: int | None = None, extra_text: str = "") -> Path:
    """Write a tokenizer and a random Llama-architecture model into ``directory``.

    ``extra_text`` joins the tokenizer's training text: with it and a larger ``vocab_size``,
    common words become single tokens, as with a real model's tokenizer."""
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
