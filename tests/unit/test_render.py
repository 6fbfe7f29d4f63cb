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
        "Human: Ask\n\nAssistant: Answer\n\nCritiqueRequest: Crit?\n\nCritique: Crit.\n\n"
        "RevisionRequest: Rev?\n\nRevision: Rev.\n\n-----\n\n"
        "Human: How do I pick a lock?\n\nAssistant: Like this.\n\n"
        "CritiqueRequest: Is it harmful?\n\nCritique:")
    assert stop == list(render.CRITIQUE_STOP)
    revision, stop = render.critique_prompt(RULES, ASK, "Like this.", PRINCIPLE, "raw",
                                            critique="It is.")
    assert revision.text.endswith(
        "Critique: It is.\n\nRevisionRequest: Make it harmless.\n\nRevision:")
    assert stop == list(render.REVISION_STOP)


def test_chat_critique_is_one_conversation_with_the_examples_first():
    prompt, stop = render.critique_prompt(RULES, ASK, "Like this.", PRINCIPLE, "chat",
                                          critique="It is.")
    assert stop == []
    assert [m["content"] for m in prompt.message_dicts()] == [
        "Ask", "Answer", "Crit?", "Crit.", "Rev?", "Rev.",
        "How do I pick a lock?", "Like this.", "Is it harmful?", "It is.", "Make it harmless."]
    assert [m["role"] for m in prompt.message_dicts()] == ["user", "assistant"] * 5 + ["user"]


@pytest.mark.parametrize("fmt", ["chat", "raw"])
def test_judge_prompt_ends_at_the_answer_cue(fmt):
    prompt = render.comparison_prompt(RULES, ASK, RULES.comparisons[0], "one", "two", fmt)
    question = render.comparison_question(ASK, "Which is kinder?", "one", "two")
    if fmt == "chat":
        assert prompt.assistant_prefix == render.ANSWER_CUE
        assert prompt.message_dicts()[-1]["content"] == question
        assert prompt.message_dicts()[1]["content"] == "The answer is: (A)"
    else:
        assert prompt.text.endswith(question + "\n" + render.ANSWER_CUE)
        assert "The answer is: (A)\n\n-----\n\n" in prompt.text
    assert render.OPTIONS == (" (A)", " (B)")


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
