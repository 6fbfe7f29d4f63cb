"""caitool records (and TRL's own formats) as training examples.

Every input line is checked while it is read, so a bad record is reported as
``file:line: problem`` before a model or tokenizer is loaded. A string ``prompt`` is always
the user's message; ``--format`` decides whether it is rendered with the model's chat
template or as the paper's ``Human:``/``Assistant:`` transcript, the same way ``caitool
generate`` renders prompts, so a trained model is asked questions the way it was taught.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from caitool import console
from caitool.errors import CaitoolError, InputError
from caitool.jsonl import iter_records, source_name
from caitool.prompts import transcript
from caitool.records import check_messages, check_prompt, conversation
from caitool.supervised import check_revisions

Messages = list[dict[str, str]]
Record = dict[str, Any]


@dataclass
class SFTExample:
    prompt: Messages
    response: str


@dataclass
class PreferenceExample:
    prompt: Messages
    chosen: str
    rejected: str
    p_chosen: float | None = None
    margin: float | None = None

    @property
    def key(self) -> str:
        return json.dumps(self.prompt, sort_keys=True, ensure_ascii=False)


# -- reading -------------------------------------------------------------------------------


def read_records(command: str, paths: list[str], validate: Callable[[Record], str | None],
                 skip_invalid: bool = False) -> list[Record]:
    """All records of ``paths`` (``-`` is stdin), each checked; an error if there are none."""
    records: list[Record] = []

    def skipped(error: InputError) -> None:
        console.warn(command, f"skipped {error}")

    for path in paths or ["-"]:
        if path == "-" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise CaitoolError("under accelerate launch or torchrun, name the input files: "
                               "stdin reaches one process only")
        for _, record in iter_records(path, validate, skip_invalid=skip_invalid, on_skip=skipped):
            records.append(record)
    if not records:
        names = ", ".join(source_name(p) for p in paths or ["-"])
        raise CaitoolError(f"{names}: no training examples (the input is empty)")
    return records


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# -- supervised fine-tuning ----------------------------------------------------------------


def check_sft(record: Record) -> str | None:
    """Why ``record`` cannot be a supervised example, or None."""
    messages = record.get("messages")
    if "prompt" not in record and isinstance(messages, list) and messages \
            and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        # TRL's conversational format: the last assistant turn is the target.
        problem = check_messages(messages)
        if problem:
            return problem
        if not any(m["role"] == "user" for m in messages[:-1]):
            return "'messages' has no user turn before the assistant's reply"
        if not messages[-1]["content"].strip():
            return "the last assistant turn of 'messages' is empty"
        return None
    problem = check_prompt(record)
    if problem:
        return problem
    if "completion" in record:
        completion = record["completion"]
        if isinstance(completion, list):
            problem = check_messages(completion, "completion")
            if problem:
                return problem
            if len(completion) != 1 or completion[0]["role"] != "assistant":
                return "'completion' must be a string or a list holding one assistant message"
            completion = completion[0]["content"]
        if not _is_text(completion):
            return "'completion' must be a non-empty string"
        return None
    if "responses" in record and "response" not in record:
        responses = record["responses"]
        if not isinstance(responses, list) or not responses or not all(map(_is_text, responses)):
            return "'responses' must be a non-empty list of non-empty strings"
        return None
    if "response" not in record:
        return ("no training target: expected 'response', 'completion', or 'messages' ending "
                "with an assistant turn")
    if not _is_text(record["response"]):
        return "'response' must be a non-empty string"
    return check_revisions(record)


def sft_examples(record: Record, all_rounds: bool = False) -> list[SFTExample]:
    """The examples one (checked) record gives; with ``all_rounds`` one per revision round."""
    messages = record.get("messages")
    if "prompt" not in record and messages and messages[-1]["role"] == "assistant":
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
        return [SFTExample(prompt, messages[-1]["content"])]
    prompt = conversation(record)
    if "completion" in record:
        completion = record["completion"]
        text = completion[0]["content"] if isinstance(completion, list) else completion
        return [SFTExample(prompt, text)]
    if "response" not in record:
        return [SFTExample(prompt, text) for text in record["responses"]]
    if all_rounds:
        revised = [entry["revision"] for entry in record.get("revisions") or []
                   if _is_text(entry.get("revision"))]
        if revised:
            return [SFTExample(prompt, text) for text in revised]
    return [SFTExample(prompt, record["response"])]


def render_sft(example: SFTExample, fmt: str) -> dict[str, Any]:
    """TRL's prompt/completion format, so that the loss covers the completion only."""
    if fmt == "chat":
        return {"prompt": example.prompt,
                "completion": [{"role": "assistant", "content": example.response}]}
    return {"prompt": raw_prompt(example.prompt), "completion": " " + example.response}


# -- preferences ---------------------------------------------------------------------------


def _split_implicit(record: Record) -> tuple[Messages, Messages, Messages] | str:
    """TRL's implicit-prompt format: chosen and rejected are whole conversations."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, list):
            return f"missing 'prompt' (or 'messages'), and '{name}' is not a whole conversation"
        problem = check_messages(value, name)
        if problem:
            return problem
        if value[-1]["role"] != "assistant":
            return f"'{name}' must end with an assistant turn"
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0 or not any(m["role"] == "user" for m in chosen[:shared]):
        return "'chosen' and 'rejected' share no prompt (give 'prompt' explicitly)"
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _answer(value: Any, name: str) -> str | tuple[str]:
    """The text of a chosen/rejected answer, or (problem,)."""
    if isinstance(value, list):
        problem = check_messages(value, name)
        if problem:
            return (problem,)
        if len(value) != 1 or value[0]["role"] != "assistant":
            return (f"'{name}' must be a string or a list holding one assistant message",)
        value = value[0]["content"]
    if not isinstance(value, str):
        return (f"missing '{name}'" if value is None else f"'{name}' must be a string",)
    return value


def check_preference(record: Record) -> str | None:
    if "prompt" in record or "messages" in record:
        problem = check_prompt(record)
        if problem:
            return problem
        for name in ("chosen", "rejected"):
            answer = _answer(record.get(name), name)
            if isinstance(answer, tuple):
                return answer[0]
    else:
        split = _split_implicit(record)
        if isinstance(split, str):
            return split
        for name, tail in zip(("chosen", "rejected"), split[1:]):
            if len(tail) != 1:
                return f"'{name}' must end with exactly one assistant turn after the shared prompt"
    p = record.get("p_chosen")
    if p is not None and (not _number(p) or not 0 <= p <= 1):
        return "'p_chosen' must be a number in [0, 1]"
    margin = record.get("margin")
    if margin is not None and not _number(margin):
        return "'margin' must be a number"
    return None


def preference_example(record: Record) -> PreferenceExample:
    if "prompt" in record or "messages" in record:
        prompt = conversation(record)
        chosen = _answer(record["chosen"], "chosen")
        rejected = _answer(record["rejected"], "rejected")
    else:
        prompt, chosen_tail, rejected_tail = _split_implicit(record)
        chosen, rejected = chosen_tail[0]["content"], rejected_tail[0]["content"]
    p = record.get("p_chosen")
    margin = record.get("margin")
    return PreferenceExample(prompt, chosen, rejected,
                             None if p is None else float(p),
                             None if margin is None else float(margin))


def hard_pairs(command: str, examples: Iterable[PreferenceExample]) -> list[PreferenceExample]:
    """Pairs for a hard-label loss: the preferred answer first, ties left out (and counted)."""
    pairs: list[PreferenceExample] = []
    ties = 0
    for ex in examples:
        if ex.p_chosen is not None and ex.p_chosen == 0.5:
            ties += 1
            continue
        if ex.p_chosen is not None and ex.p_chosen < 0.5:
            ex = PreferenceExample(ex.prompt, ex.rejected, ex.chosen, 1 - ex.p_chosen, ex.margin)
        pairs.append(ex)
    if ties:
        console.warn(command, f"left out {ties} tied pair(s) (p_chosen = 0.5): a hard label "
                              "cannot express a tie; soft labels keep them")
    if not pairs:
        raise CaitoolError("no pairs left to train on: every pair is a tie")
    return pairs


def render_preference(example: PreferenceExample, fmt: str) -> dict[str, Any]:
    """TRL's preference format with an explicit prompt."""
    if fmt == "chat":
        return {"prompt": example.prompt,
                "chosen": [{"role": "assistant", "content": example.chosen}],
                "rejected": [{"role": "assistant", "content": example.rejected}]}
    return {"prompt": raw_prompt(example.prompt), "chosen": " " + example.chosen,
            "rejected": " " + example.rejected}


def split_heldout(examples: list[PreferenceExample], fraction: float,
                  seed: int) -> tuple[list[PreferenceExample], list[PreferenceExample]]:
    """Hold out a fraction of the prompts (every pair of a prompt on the same side)."""
    if fraction <= 0:
        return examples, []
    keys = sorted({ex.key for ex in examples})
    random.Random(seed).shuffle(keys)
    held = set(keys[: int(len(keys) * fraction)])
    train = [ex for ex in examples if ex.key not in held]
    if not train:
        return examples, []
    return train, [ex for ex in examples if ex.key in held]


# -- prompts (PPO) -------------------------------------------------------------------------


def check_prompt_only(record: Record) -> str | None:
    return check_prompt(record)


# -- tokenization --------------------------------------------------------------------------


def resolve_format(fmt: str, tokenizer: Any, model: str) -> str:
    if fmt not in ("auto", "chat", "raw"):
        raise CaitoolError(f"--format must be auto, chat or raw, not '{fmt}'")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if fmt == "auto":
        return "chat" if has_template else "raw"
    if fmt == "chat" and not has_template:
        raise CaitoolError(f"model '{model}' has no chat template; use --format raw")
    return fmt


def raw_prompt(messages: Messages) -> str:
    return transcript(messages) + "\n\nAssistant:"


def prompt_ids(tokenizer: Any, messages: Messages, fmt: str) -> list[int]:
    """The token ids a policy is given before it answers (as ``caitool generate`` builds them)."""
    if fmt == "chat":
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    return list(tokenizer(raw_prompt(messages))["input_ids"])


def response_ids(tokenizer: Any, text: str, fmt: str) -> list[int]:
    """An answer's ids as a policy would emit them after its prompt: text, then end-of-sequence.

    The reward model is trained on exactly these sequences (prompt ids + response ids), which
    are also what PPO hands it, so it scores the policy's outputs in the form it learnt.
    """
    body = text if fmt == "chat" else " " + text
    ids = list(tokenizer(body, add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id]


def keep_end(ids: list[int], max_length: int | None) -> tuple[list[int], bool]:
    """Cut ``ids`` to their last ``max_length``; returns (ids, whether anything was cut).

    The end is what matters to both users of this: a reward model reads its score at the
    last token, and a policy answers right after the end of its prompt."""
    if max_length is None or len(ids) <= max_length:
        return ids, False
    return ids[-max_length:], True
