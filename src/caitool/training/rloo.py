"""train-rloo: REINFORCE leave-one-out (Ahmadian et al. 2024) with TRL's RLOOTrainer.

Each response's advantage is its reward minus the mean reward of the other responses to the
same prompt, and the KL to the starting policy (``beta``, ``--kl-coef``) is subtracted from
the reward, as in the paper's r = r_PM - beta * KL. The shared path is
:mod:`caitool.training.critic_free`.
"""

from __future__ import annotations

from typing import Any

from caitool.training import args, critic_free

OWNED = critic_free.OWNED


def config_class() -> type:
    from trl import RLOOConfig

    return RLOOConfig


def trainer_class() -> type:
    from trl import RLOOTrainer

    return RLOOTrainer


ALGORITHM = critic_free.Algorithm("RLOO", config_class, trainer_class)


def train(command: str, asked: args.Request, flags: Any,
          options: critic_free.RLOptions | None = None) -> None:
    critic_free.train(command, asked, flags, ALGORITHM, options or critic_free.RLOptions())
