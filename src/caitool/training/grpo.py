"""train-grpo: group relative policy optimisation (Shao et al. 2024) with TRL's GRPOTrainer.

Each response's advantage is its reward less the mean of its group, scaled by the group's
spread (TRL's ``scale_rewards``), with a clipped policy-ratio loss (``loss_type``, TRL
default ``dapo``); the KL to the starting policy (``beta``, ``--kl-coef``) is a term of the
loss. caitool's default ``beta`` is 0.05, not TRL's 0, to keep the paper's pull towards the
starting policy; ``--kl-coef 0`` drops the reference model and its memory. The shared path
is :mod:`caitool.training.critic_free`.
"""

from __future__ import annotations

from typing import Any

from caitool.training import args, critic_free

OWNED = critic_free.OWNED


def config_class() -> type:
    from trl import GRPOConfig

    return GRPOConfig


def trainer_class() -> type:
    from trl import GRPOTrainer

    return GRPOTrainer


ALGORITHM = critic_free.Algorithm("GRPO", config_class, trainer_class)


def train(command: str, asked: args.Request, flags: Any,
          options: critic_free.RLOptions | None = None) -> None:
    critic_free.train(command, asked, flags, ALGORITHM, options or critic_free.RLOptions())
