"""A reward trainer that learns from soft labels, and a held-out accuracy check.

TRL's ``RewardTrainer`` knows hard labels (chosen beats rejected) with an optional margin.
The paper's AI feedback gives soft labels: p = P(chosen is better). The loss here is the
cross-entropy against p,

    -[p * log sigmoid(d - m) + (1 - p) * log sigmoid(-d - m)],   d = r_chosen - r_rejected,

which is TRL's loss when p = 1 and is smallest at d = 0 when p = 0.5 (a tie teaches no
preference). The margin m asks the preferred side to win by at least m either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference


@dataclass
class PairCollator(DataCollatorForPreference):
    """TRL's preference collator, carrying ``p_chosen`` along with ``margin``."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        output["p_chosen"] = torch.tensor([e["p_chosen"] for e in examples], dtype=torch.float)
        return output


def soft_pair_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor,
                   p_chosen: torch.Tensor, margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    d = rewards_chosen - rewards_rejected
    return -(p_chosen * F.logsigmoid(d - margin)
             + (1 - p_chosen) * F.logsigmoid(-d - margin)).mean()


class SoftLabelRewardTrainer(RewardTrainer):
    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "p_chosen"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        p_chosen = inputs.pop("p_chosen")
        margin = inputs.pop("margin", 0.0)
        inputs["use_cache"] = False
        outputs = model(**inputs)
        rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        loss = soft_pair_loss(rewards_chosen, rewards_rejected, p_chosen.to(rewards_chosen.dtype),
                              margin)
        if self.args.center_rewards_coefficient is not None:
            loss += self.args.center_rewards_coefficient * torch.mean(
                (rewards_chosen + rewards_rejected) ** 2)

        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            d = rewards_chosen - rewards_rejected
            decided = p_chosen != 0.5
            if decided.any():
                right = ((d > 0) == (p_chosen > 0.5))[decided].float().mean()
                self._metrics[mode]["accuracy"].append(
                    self.accelerator.gather_for_metrics(right).mean().item())
            self._metrics[mode]["margin"].append(
                self.accelerator.gather_for_metrics(d.mean()).mean().item())
            all_rewards = self.accelerator.gather(outputs.logits)
            self._metrics[mode]["mean_reward"].append(all_rewards.mean().item())
        return (loss, outputs) if return_outputs else loss


@torch.no_grad()
def score_pairs(model, rows: Iterable[dict[str, Any]], pad_token_id: int,
                batch_size: int = 16) -> list[tuple[float, float]]:
    """(reward of chosen, reward of rejected) for each tokenized pair."""
    model.eval()
    device = next(model.parameters()).device
    rows = list(rows)
    collator = PairCollator(pad_token_id=pad_token_id)
    scores: list[tuple[float, float]] = []
    for start in range(0, len(rows), batch_size):
        batch = collator([{k: r[k] for k in ("chosen_ids", "rejected_ids", "p_chosen")}
                          for r in rows[start:start + batch_size]])
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device), use_cache=False).logits
        chosen, rejected = torch.chunk(logits.squeeze(-1).float(), chunks=2)
        scores.extend(zip(chosen.tolist(), rejected.tolist()))
    return scores


@torch.no_grad()
def score_sequences(model, ids: list[list[int]], pad_token_id: int,
                    batch_size: int = 16) -> list[float]:
    """The model's one output for each token sequence, padded as the pair collator pads."""
    from trl.trainer.utils import pad

    model.eval()
    device = next(model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(ids), batch_size):
        chunk = [torch.tensor(row, dtype=torch.long) for row in ids[start:start + batch_size]]
        input_ids = pad(chunk, padding_value=pad_token_id)
        mask = pad([torch.ones_like(row) for row in chunk], padding_value=0)
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                       use_cache=False).logits
        scores.extend(logits.squeeze(-1).float().tolist())
    return scores


def pairwise_report(scores: list[tuple[float, float]], p_chosen: list[float]) -> dict[str, Any]:
    """Held-out pairwise accuracy (ties in the labels left out) and the mean reward gap."""
    decided = [(c - r, p) for (c, r), p in zip(scores, p_chosen) if p != 0.5]
    right = sum(1 for d, p in decided if (d > 0) == (p > 0.5))
    gaps = [c - r for c, r in scores]
    return {
        "heldout_pairs": len(scores),
        "heldout_accuracy": right / len(decided) if decided else None,
        "heldout_mean_margin": sum(gaps) / len(gaps) if gaps else None,
        "heldout_mean_abs_margin": sum(abs(g) for g in gaps) / len(gaps) if gaps else None,
    }
