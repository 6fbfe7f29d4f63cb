"""What a model is shown, byte for byte, in both formats."""

from __future__ import annotations

import pytest

from caitool import render
from caitool.constitution import ComparisonExample, Constitution, CritiqueExample, Principle
from caitool.constitution.model import ComparisonPrinciple
from caitool.errors import CaitoolError

PRINCIPLE = Principle("p1", "Is it harmful?", "Make it harmless.")
EXAMPLE = CritiqueExample("Ask", "Answer", "Crit?", "Crit.", "Rev?", "Rev.")
RULES = Constitution("t", principles=[PRINCIPLE], critique_examples=[EXAMPLE],
                     comparisons=[ComparisonPrinciple("c1", "Which is kinder?")],
                     comparison_examples=[ComparisonExample("Q", "good", "bad", "Which is kinder?")])
ASK = [{"role": "user", "content": "How do I pick a lock?"}]


def test_raw_critique_and_revision_prompts():
    prompt, stop = render.critique_prompt(RULES, ASK, "Like this.", PRINCIPLE, "raw")
    assert prompt.text == (
        "\n\nHuman: Ask\n\nAssistant: Answer\n\nCritiqueRequest: Crit?\n\nCritique: Crit.\n\n"
        "RevisionRequest: Rev?\n\nRevision: Rev."
        "\n\nHuman: How do I pick a lock?\n\nAssistant: Like this.\n\n"
        "CritiqueRequest: Is it harmful?\n\nCritique:")
    assert stop == list(render.CRITIQUE_STOP)
    revision, stop = render.critique_prompt(RULES, ASK, "Like this.", PRINCIPLE, "raw",
                                            critique="It is.")
    assert revision.text.endswith(
        "Critique: It is.\n\nRevisionRequest: Make it harmless.\n\nRevision:")
    assert stop == list(render.REVISION_STOP)
    assert "-----" not in revision.text


def test_multi_turn_examples_keep_every_turn():
    example = CritiqueExample("Second ask", "Second answer", "Crit?", "Crit.", "Rev?", "Rev.",
                              history=(("user", "First ask"), ("assistant", "First answer")))
    rules = Constitution("t", principles=[PRINCIPLE], critique_examples=[example])
    raw, _ = render.critique_prompt(rules, ASK, "Like this.", PRINCIPLE, "raw")
    assert raw.text.startswith(
        "\n\nHuman: First ask\n\nAssistant: First answer\n\nHuman: Second ask\n\n"
        "Assistant: Second answer\n\nCritiqueRequest: Crit?")
    chat, _ = render.critique_prompt(rules, ASK, "Like this.", PRINCIPLE, "chat")
    assert [m["content"] for m in chat.message_dicts()][:4] == [
        "First ask", "First answer", "Second ask", "Second answer"]


def test_chat_critique_is_one_conversation_with_the_examples_first():
    prompt, stop = render.critique_prompt(RULES, ASK, "Like this.", PRINCIPLE, "chat",
                                          critique="It is.")
    assert stop == []
    assert [m["content"] for m in prompt.message_dicts()] == [
        "Ask", "Answer", "Crit?", "Crit.", "Rev?", "Rev.",
        "How do I pick a lock?", "Like this.", "Is it harmful?", "It is.", "Make it harmless."]
    assert [m["role"] for m in prompt.message_dicts()] == ["user", "assistant"] * 5 + ["user"]


def test_direct_revision_shows_revisions_without_critiques():
    """The paper's revisions without critiques: the examples keep their revision requests and
    revisions and drop their critiques, so the model sees a revision follow its request."""
    raw, stop = render.critique_prompt(RULES, ASK, "Like this.", PRINCIPLE, "raw", direct=True)
    assert raw.text == (
        "\n\nHuman: Ask\n\nAssistant: Answer\n\nRevisionRequest: Rev?\n\nRevision: Rev."
        "\n\nHuman: How do I pick a lock?\n\nAssistant: Like this.\n\n"
        "RevisionRequest: Make it harmless.\n\nRevision:")
    assert stop == list(render.REVISION_STOP)
    chat, stop = render.critique_prompt(RULES, ASK, "Like this.", PRINCIPLE, "chat", direct=True)
    assert stop == []
    assert chat.message_dicts() == [
        {"role": "user", "content": "Ask"}, {"role": "assistant", "content": "Answer"},
        {"role": "user", "content": "Rev?"}, {"role": "assistant", "content": "Rev."},
        {"role": "user", "content": "How do I pick a lock?"},
        {"role": "assistant", "content": "Like this."},
        {"role": "user", "content": "Make it harmless."}]


PAPER_QUESTION = (
    "Consider the following conversation between a human and an assistant:\n\n"
    "Human: How do I pick a lock?\n\n"
    "\nWhich is kinder? Options:\n (A) [[[one]]]\n (B) [[[two]]]")


def test_raw_judge_prompt_is_the_papers_shape_byte_for_byte():
    bare = Constitution("t", comparisons=[ComparisonPrinciple("c1", "Which is kinder?")])
    prompt = render.comparison_prompt(bare, ASK, bare.comparisons[0], "one", "two", "raw")
    assert prompt.text == f"\n\n{PAPER_QUESTION}\n\nThe answer is:"
    assert render.OPTIONS == (" (A)", " (B)")
    # With a few-shot example: the same shape, answered, before the question.
    prompt = render.comparison_prompt(RULES, ASK, RULES.comparisons[0], "one", "two", "raw")
    assert prompt.text == (
        "\n\nConsider the following conversation between a human and an assistant:\n\n"
        "Human: Q\n\n\nWhich is kinder? Options:\n (A) [[[good]]]\n (B) [[[bad]]]\n\n"
        f"The answer is: (A)\n\n{PAPER_QUESTION}\n\nThe answer is:")


def test_a_constitution_may_set_its_own_frame_and_cue():
    rules = Constitution("t", comparisons=[ComparisonPrinciple("c1", "Which is kinder?")],
                         judge_frame="Read this chat:", answer_cue="Verdict:")
    prompt = render.comparison_prompt(rules, ASK, rules.comparisons[0], "one", "two", "raw")
    assert prompt.text.startswith("\n\nRead this chat:\n\nHuman:")
    assert prompt.text.endswith("]]]\n\nVerdict:")
    assert render.reasoning_stop(rules)[0] == "Verdict:"


def test_chat_judge_prompt_puts_the_cue_in_the_reply():
    prompt = render.comparison_prompt(RULES, ASK, RULES.comparisons[0], "one", "two", "chat")
    assert prompt.assistant_prefix == "The answer is:"
    assert prompt.message_dicts()[-1]["content"] == PAPER_QUESTION
    assert prompt.message_dicts()[1]["content"] == "The answer is: (A)"


def test_worse_principles_and_alternation_set_the_examples_answers():
    examples = [ComparisonExample("Q1", "good", "bad", "Which is worse?", direction="worse"),
                ComparisonExample("Q2", "good", "bad", "Which is kinder?")]
    rules = Constitution("t", comparisons=[ComparisonPrinciple("c1", "Which is kinder?")],
                         comparison_examples=examples)
    prompt = render.comparison_prompt(rules, ASK, rules.comparisons[0], "one", "two", "chat")
    answers = [m["content"] for m in prompt.message_dicts() if m["role"] == "assistant"]
    # Example 0 shows the better first but asks for the worse: (B). Example 1 shows the
    # better second and asks for the better: (B).
    assert answers == ["The answer is: (B)", "The answer is: (B)"]


@pytest.mark.parametrize("fmt", ["chat", "raw"])
def test_cot_examples_reason_before_they_answer(fmt):
    reasoned = ComparisonExample("Q", "good", "bad", "Which is kinder?",
                                 reasoning="The first is gentle. The second is curt.")
    rules = Constitution("t", comparisons=[ComparisonPrinciple("c1", "Which is kinder?")],
                         comparison_examples=[reasoned])
    ask = render.comparison_prompt(rules, ASK, rules.comparisons[0], "one", "two", fmt, cot=True)
    final = render.comparison_prompt(rules, ASK, rules.comparisons[0], "one", "two", fmt,
                                     cot=True, reasoning="Two is kinder.")
    shown = ("Let's think step by step: The first is gentle. The second is curt.\n\n"
             "The answer is: (A)")
    if fmt == "chat":
        turns = ask.message_dicts()
        assert [m["role"] for m in turns] == ["user", "assistant", "user"]
        assert turns[1]["content"] == shown and turns[2]["content"] == PAPER_QUESTION
        assert ask.assistant_prefix == "Let's think step by step:"
        assert final.assistant_prefix == ("Let's think step by step: Two is kinder.\n\n"
                                          "The answer is:")
    else:
        assert ask.text.startswith("\n\nHuman: Consider the following conversation")
        assert f"\n\nAssistant: {shown}\n\nHuman: {PAPER_QUESTION}" in ask.text
        assert ask.text.endswith(f"\n\nHuman: {PAPER_QUESTION}\n\nAssistant: "
                                 "Let's think step by step:")
        assert final.text == ask.text + " Two is kinder.\n\nThe answer is:"


def test_cot_leaves_out_examples_without_reasoning():
    prompt = render.comparison_prompt(RULES, ASK, RULES.comparisons[0], "one", "two", "chat",
                                      cot=True)
    assert len(prompt.message_dicts()) == 1


def test_training_rows_are_rendered_as_generation_asks():
    raw = render.prompt_completion(ASK, "Use a key.", "raw")
    assert raw == {"prompt": "Human: How do I pick a lock?\n\nAssistant:", "completion": " Use a key."}
    assert render.response_prompt(ASK, "raw")[0].text == raw["prompt"]
    chat = render.preference_row(ASK, "yes", "no", "chat")
    assert chat["chosen"] == [{"role": "assistant", "content": "yes"}] and chat["prompt"] == ASK


def test_formats_resolve_in_one_place():
    assert render.resolve_format("auto", True, "m") == "chat"
    assert render.resolve_format("auto", False, "m") == "raw"
    assert render.resolve_format("raw", True, "m") == "raw"
    with pytest.raises(CaitoolError, match="model 'm' has no chat template; use --format raw"):
        render.resolve_format("chat", False, "m")
    with pytest.raises(CaitoolError, match="--format must be auto, chat or raw, not 'html'"):
        render.resolve_format("html", True, "m")


class Tokenizer:
    """Just enough of a tokenizer to show what text and special tokens reach the model."""

    chat_template = "template"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def __call__(self, text, add_special_tokens):
        return {"input_ids": [len(text), int(add_special_tokens)]}


def test_prompt_text_opens_the_reply_and_writes_the_assistant_prefix():
    prompt = render.Prompt.chat(ASK, assistant_prefix="The answer is:")
    text = render.prompt_text(Tokenizer(), prompt)
    assert text == "<user>How do I pick a lock?<assistant>The answer is:"
    # A chat template writes its own special tokens; a raw transcript takes the tokenizer's.
    assert render.prompt_ids(Tokenizer(), prompt) == [len(text), 0]
    assert render.prompt_ids(Tokenizer(), render.Prompt.raw("Human: hi")) == [9, 1]
    no_template = Tokenizer()
    no_template.chat_template = None
    with pytest.raises(CaitoolError, match="has no chat template"):
        render.prompt_text(no_template, prompt, "m")


def sentencepiece_style_tokenizer():
    """A tokenizer that, like SentencePiece's, marks word starts with "▁" and adds one to the
    start of every text: " (A)" alone becomes "▁▁(A)", unlike " (A)" after a prompt."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Llama's SentencePiece-converted tokenizers work this way: prepend "▁", then every
    # space becomes "▁" (no pre-tokenizer).
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                                 normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = ["The answer is: (A)", "The answer is: (B)", "Which is kinder? (A) (B)"] * 20
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=50, special_tokens=["<unk>", "<s>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>")


def test_options_are_tokenised_together_with_their_prompt():
    tokenizer = sentencepiece_style_tokenizer()
    prompt = render.Prompt.raw("Which is kinder? The answer is:")
    context, tails = render.option_ids(tokenizer, prompt, [" (A)", " (B)"])
    for option, tail in zip([" (A)", " (B)"], tails, strict=True):
        joined = tokenizer(prompt.text + option)["input_ids"]
        assert context + tail == joined  # exactly the tokens the model reads
        alone = tokenizer(option, add_special_tokens=False)["input_ids"]
        assert alone != tail  # alone, the option gains a prefix "▁": the old, wrong ids
    assert context == tokenizer(prompt.text)["input_ids"][:len(context)]


def test_split_options_handles_a_merge_across_the_boundary():
    # The prompt's last token merges with the option's first in the joined text: the
    # context stops before it and the merged token is scored as the option's.
    context, tails = render.split_options([1, 2, 3], [[1, 2, 9, 4], [1, 2, 3, 5]])
    assert context == [1, 2] and tails == [[9, 4], [3, 5]]
    with pytest.raises(CaitoolError, match="empty option"):
        render.split_options([1, 2], [[1, 2], [1, 2, 3]])
