"""Scoring text with a reward model or a score model: multiple-choice rows decided by the
higher reward (``eval-mc --reward-model``), and each system's answers scored
(``eval --score-model``).

A row's ``text_correct`` and ``text_incorrect`` are whole transcripts (``\\n\\nHuman: ...
\\n\\nAssistant: ...``). Each is shown to the reward model the way ``caitool train-rm``
showed it its training pairs: the conversation up to the last assistant turn as the policy's
prompt (chat template or raw transcript, as ``--format`` resolves for the reward model's
tokenizer), then that reply and the end-of-sequence token. Text that is not such a
transcript is scored as it is, followed by the end-of-sequence token. The row is right when
a correct transcript gets the highest reward (ties as in :mod:`.multiple_choice`).

A score model (``train-rm --target FIELD``) learnt a standardised target; its scores are
turned back into the field's units with the mean and spread its ``caitool_training.json``
keeps, so that a system's mean score reads as, say, a mean rating.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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
    trained: dict[str, Any] | None = None  # its caitool_training.json, where it has one

    @property
    def target(self) -> str | None:
        """The field a score model predicts (None for a preference reward model)."""
        return (self.trained or {}).get("target") if self.regression else None

    @property
    def regression(self) -> bool:
        return (self.trained or {}).get("objective") == "regression"

    def describe(self) -> dict[str, Any]:
        described = {"model": self.name, "format": self.fmt}
        if self.regression:
            described.update(objective="regression", target=self.target,
                             normalization=self.trained.get("normalization"))  # type: ignore[union-attr]
        return described

    def score_ids(self, ids: list[list[int]], batch_size: int = 16) -> list[float]:
        """The model's output for each sequence, in the target's units for a score model."""
        from caitool.training.reward import score_sequences

        scores = score_sequences(self.model, ids, self.tokenizer.pad_token_id, batch_size)
        scale = (self.trained or {}).get("normalization") if self.regression else None
        if scale:
            scores = [scale["mean"] + scale["std"] * value for value in scores]
        return scores

    def scores(self, texts: list[str], batch_size: int = 16) -> list[float]:
        """The reward of each transcript."""
        return self.score_ids([transcript_ids(self.tokenizer, text, self.fmt) for text in texts],
                              batch_size)

    def score_answers(self, answers: list[tuple[Messages, str]], batch_size: int = 16) -> list[float]:
        """The score of each reply to its conversation, on the sequence train-rm trains on."""
        return self.score_ids([policy_prompt_ids(self.tokenizer, messages, self.fmt)  # type: ignore[arg-type]
                               + reply_ids(self.tokenizer, reply, self.fmt)
                               for messages, reply in answers], batch_size)


def trained_summary(path: str) -> dict[str, Any] | None:
    """A model directory's caitool_training.json, if it has a readable one."""
    from caitool.training.fit import SUMMARY

    try:
        summary = json.loads((Path(path) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def load(name: str, fmt: str = "auto", device: str | None = None) -> RewardModel:
    """A one-output sequence classifier as ``caitool train-rm`` saves it, with its tokenizer;
    ``fmt`` (auto, chat or raw) should be what it was trained with, and ``auto`` is that
    where its summary file records it."""
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
    trained = trained_summary(path)
    if fmt == "auto" and (trained or {}).get("format") in ("chat", "raw"):
        fmt = trained["format"]  # type: ignore[index]
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
    return RewardModel(name, model, tokenizer, chosen, trained)


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


def score_systems(reward_model: RewardModel, systems: list[Any], batch_size: int = 16,
                  advance: Callable[[int], None] = lambda n: None) -> dict[str, dict[str, float]]:
    """``{system: {id: score}}``: every answer of every system (an ``evaluate.systems.System``)
    scored on its own prompt, a batch at a time."""
    from caitool.schema import conversation

    scored: dict[str, dict[str, float]] = {}
    for system in systems:
        ids = list(system.records)
        scored[system.name] = {}
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            answers = [(conversation(system.records[i]), system.records[i]["response"]) for i in chunk]
            scored[system.name].update(zip(chunk, reward_model.score_answers(answers, batch_size),
                                           strict=True))
            advance(len(chunk))
    return scored


def score_lines(scored: dict[str, dict[str, float]]) -> Iterator[dict[str, Any]]:
    """The evidence behind the mean scores, a line per system and prompt (``--judgments``)."""
    for system, by_id in scored.items():
        for record_id, score in by_id.items():
            yield {"dimension": "score", "system": system, "id": record_id, "score": score}
