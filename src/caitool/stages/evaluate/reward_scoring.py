"""Multiple-choice rows decided by a reward model instead of a judge.

A row's ``text_correct`` and ``text_incorrect`` are whole transcripts (``\\n\\nHuman: ...
\\n\\nAssistant: ...``). Each is shown to the reward model the way ``caitool train-rm``
showed it its training pairs: the conversation up to the last assistant turn as the policy's
prompt (chat template or raw transcript, as ``--format`` resolves for the reward model's
tokenizer), then that reply and the end-of-sequence token. Text that is not such a
transcript is scored as it is, followed by the end-of-sequence token. The row is right when
a correct transcript gets the highest reward (ties as in :mod:`.multiple_choice`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from caitool.errors import CaitoolError
from caitool.render import has_chat_template, policy_prompt_ids, reply_ids, resolve_format
from caitool.stages.evaluate.multiple_choice import EvalFile, FileResult, Scored

Messages = list[dict[str, str]]
_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def transcript_messages(text: str) -> Messages | None:
    """The turns of a ``Human:``/``Assistant:`` transcript that ends with the assistant's
    reply, or None for text of another shape."""
    parts = _TURN.split(text.lstrip("\n"))
    if len(parts) < 5 or parts[0].strip():
        return None
    messages = [{"role": _ROLES[label], "content": content.strip()}
                for label, content in zip(parts[1::2], parts[2::2], strict=True)]
    if messages[0]["role"] != "user" or messages[-1]["role"] != "assistant":
        return None
    return messages


def transcript_ids(tokenizer: Any, text: str, fmt: str) -> list[int]:
    messages = transcript_messages(text)
    if messages is None:
        return list(tokenizer(text)["input_ids"]) + [tokenizer.eos_token_id]
    return (policy_prompt_ids(tokenizer, messages[:-1], fmt)  # type: ignore[arg-type]
            + reply_ids(tokenizer, messages[-1]["content"], fmt))  # type: ignore[arg-type]


@dataclass
class RewardModel:
    name: str
    model: Any
    tokenizer: Any
    fmt: str

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "format": self.fmt}

    def scores(self, texts: list[str], batch_size: int = 16) -> list[float]:
        """The reward of each transcript. ``training.reward.score_pairs`` scores pairs, so the
        transcripts go to it two at a time (the last one twice when their number is odd)."""
        from caitool.training.reward import score_pairs

        ids = [transcript_ids(self.tokenizer, text, self.fmt) for text in texts]
        if len(ids) % 2:
            ids.append(ids[-1])
        pairs = [{"chosen_ids": ids[i], "rejected_ids": ids[i + 1], "p_chosen": 1.0}
                 for i in range(0, len(ids), 2)]
        rewards = score_pairs(self.model, pairs, self.tokenizer.pad_token_id, batch_size)
        return [value for pair in rewards for value in pair][:len(texts)]


def load(name: str, fmt: str = "auto", device: str | None = None) -> RewardModel:
    """A one-output sequence classifier as ``caitool train-rm`` saves it, with its tokenizer;
    ``fmt`` (auto, chat or raw) should be what it was trained with."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from caitool.models import check_loadable, local_model
    from caitool.training import fit
    from caitool.training.ppo import check_reward_config

    if name.startswith((".", "/", "~")) and not os.path.exists(os.path.expanduser(name)):
        raise CaitoolError(f"reward model '{name}' does not exist")
    fit.quiet_libraries()
    path = local_model(os.path.expanduser(name))
    check_loadable(path, name)
    check_reward_config(path)
    tokenizer = fit.load_tokenizer(path, "reward model")
    chosen = resolve_format(fmt, has_chat_template(tokenizer), name)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32,
                                                                   num_labels=1)
    except (OSError, ValueError) as exc:
        raise CaitoolError(f"cannot load the reward model '{name}': {fit.first_line(exc)}") from None
    if model.config.pad_token_id is None:
        # The classifier reads its score at the last token that is not padding.
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    return RewardModel(name, model, tokenizer, chosen)


def score_with_reward_model(reward_model: RewardModel, file: EvalFile, batch_size: int = 16,
                            advance: Callable[[int], None] = lambda n: None) -> FileResult:
    """Score every row with transcripts, a batch of rows at a time."""
    rows = [row for row in file.rows if row.has_texts]
    result = FileResult(file.path, [], skipped=len(file.rows) - len(rows), invalid=file.invalid)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        texts = [text for row in chunk for text in row.texts_correct + row.texts_incorrect]
        rewards = iter(reward_model.scores(texts, batch_size))
        for row in chunk:
            correct = [next(rewards) for _ in row.texts_correct]
            incorrect = [next(rewards) for _ in row.texts_incorrect]
            result.scored.append(Scored(row.line, correct, incorrect))
            result.sizes.append(len(correct) + len(incorrect))
        advance(len(chunk))
    return result
