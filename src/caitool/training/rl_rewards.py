"""Rewards for the critic-free trainers (RLOO, GRPO): TRL reward functions, called with a
batch's prompts and sampled completions and returning one number per completion.

* :class:`RewardModelReward` scores with the reward model's own tokenizer, on exactly the
  sequence ``train-rm`` trained it on: the prompt as the policy sees it in that tokenizer
  (its chat template with the reply opened, or the raw transcript), the reply's tokens and
  the end-of-sequence token. TRL's own reward-model path renders prompt and reply as one
  whole conversation, which with most templates puts more tokens after the end of the turn
  and reads the score there, on a sequence the model never learnt from.
* :class:`Unended` subtracts a penalty from a response that never reached its
  end-of-sequence token, as ``train-ppo``'s missing-EOS penalty does, so that running on to
  the length limit is never a way to collect reward.

The conversation of each prompt travels in the dataset as the ``conversation`` column
(JSON), which TRL hands reward functions by name.
"""

from __future__ import annotations

import json
from typing import Any

from caitool.backends.base import cut_at_stop
from caitool.errors import CaitoolError
from caitool.render import RESPONSE_STOP, has_chat_template, policy_prompt_ids, reply_ids


def response_text(completion: Any, fmt: str) -> str:
    """The reply a completion holds: an assistant message's content (chat), or the raw
    transcript's continuation, cut where the next turn would begin (as ``caitool generate``
    stops it)."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    text = str(completion)
    return cut_at_stop(text, list(RESPONSE_STOP)).strip() if fmt == "raw" else text


def ended(ids: list[int], eos_token_id: int) -> bool:
    """Whether a completion's token ids reach the end-of-sequence token (TRL cuts them there,
    keeping it)."""
    return bool(ids) and ids[-1] == eos_token_id


class RewardModelReward:
    """A one-output sequence classifier's score for each completion (see the module note)."""

    __name__ = "rm"

    def __init__(self, path: str, name: str, fmt: str, dtype: Any = None, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification

        from caitool.training import fit

        self.name, self.fmt, self.batch_size = name, fmt, batch_size
        self.tokenizer = reward_tokenizer(path, name, fmt)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=dtype or torch.float32)
        except Exception as exc:  # noqa: BLE001 - a model that will not load is the user's to fix
            raise CaitoolError(f"cannot load the reward model '{name}': {fit.first_line(exc)}") from None
        self.model.eval().requires_grad_(False)
        # The score is read at the last token that is not padding.
        self.pad_id = self.tokenizer.pad_token_id
        self.model.config.pad_token_id = self.pad_id

    def to(self, device: Any) -> RewardModelReward:
        self.model.to(device)
        return self

    def sequence(self, conversation: str, completion: Any) -> list[int]:
        messages = json.loads(conversation)
        return (policy_prompt_ids(self.tokenizer, messages, self.fmt)
                + reply_ids(self.tokenizer, response_text(completion, self.fmt), self.fmt))

    def __call__(self, prompts: list[Any], completions: list[Any], conversation: list[str],
                 **_: Any) -> list[float]:
        import torch

        device = next(self.model.parameters()).device
        sequences = [self.sequence(c, reply) for c, reply in zip(conversation, completions, strict=True)]
        scores: list[float] = []
        for start in range(0, len(sequences), self.batch_size):
            batch = sequences[start:start + self.batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                    use_cache=False).logits
            scores.extend(logits[:, 0].float().tolist())
        return scores


def reward_tokenizer(path: str, name: str, fmt: str):
    """The reward model's tokenizer, once it is known to render prompts in ``fmt``."""
    from caitool.training import fit

    tokenizer = fit.load_tokenizer(path, "reward model")
    if fmt == "chat" and not has_chat_template(tokenizer):
        raise CaitoolError(
            f"the reward model '{name}' has no chat template to render the chat prompts "
            "with: use --format raw (the Human:/Assistant: transcript), or a reward model "
            "that has one (train-rm from the policy keeps the policy's)")
    return tokenizer


class Unended:
    """``-penalty`` for each completion that never ended, 0 for the others."""

    __name__ = "unended"

    def __init__(self, eos_token_id: int, penalty: float):
        self.eos_token_id, self.penalty = eos_token_id, penalty

    def __call__(self, prompts: list[Any], completions: list[Any],
                 completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [0.0 if ended(ids, self.eos_token_id) else -self.penalty for ids in completion_ids]


def check_reward_model(path: str, name: str) -> None:
    """A one-output sequence classifier, or one clear line (before any weights load)."""
    from transformers import AutoConfig

    from caitool.training import fit

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise CaitoolError(f"cannot load the reward model '{name}': {fit.first_line(exc)}") from None
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures) \
            or getattr(config, "num_labels", None) != 1:
        raise CaitoolError(
            f"'{name}' is not a reward model (a sequence-classification model with one output); "
            "train one with caitool train-rm, or use --reward judge")
