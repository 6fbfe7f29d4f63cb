"""The served reward, computed by the trainers' own reward functions: the reward model's
score (:class:`caitool.training.rl_rewards.RewardModelReward`, on the sequence train-rm
trained it on) and the judge's soft label (:func:`caitool.training.judge_reward.judged_rewards`,
both orders, sampled principles), mixed with ``--rm-weight``/``--judge-weight`` as TRL mixes
reward functions (a weighted sum in which a missing value counts 0).

The judge compares each response with the request's reference answer when it has one (an
OpenRLHF label, verl's ground truth, a plain record's ``reference``). Without one it compares
the response with every other sample of the same conversation in the batch (up to
``max_peers`` of them), each pair judged once in both orders, and the reward is the mean over
those pairs: the group is the baseline, as in RLOO and GRPO. A response with neither gets no
judge reward (0 in the sum) and is counted."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from caitool import console
from caitool.serving.protocol import Item
from caitool.training.critic_free import RLOptions

NAME = "serve-reward"


@dataclass
class Scored:
    reward: float
    rm: float | None = None
    judge: float | None = None


def pair_id(key: str, first: str, second: str) -> str:
    """Seeds the pair's principles: the same texts always get the same principles."""
    return hashlib.sha256("\x00".join((key, first, second)).encode()).hexdigest()[:16]


def peer_pairs(members: list[int], max_peers: int) -> list[tuple[int, int]]:
    """Each unordered pair of a prompt's samples once; in a group larger than
    ``max_peers + 1``, each sample meets its ``max_peers`` nearest neighbours on a ring
    instead, so that the judge's work grows with the group, not with its square."""
    n = len(members)
    if n - 1 <= max_peers:
        return [(members[a], members[b]) for a in range(n) for b in range(a + 1, n)]
    reach = max(1, max_peers // 2)
    return [(members[a], members[(a + step) % n]) for step in range(1, reach + 1)
            for a in range(n)]


class Scorer:
    """Loads the reward model and/or the judge once; ``scorer(items)`` scores a batch."""

    def __init__(self, options: RLOptions, fmt: str = "auto", device: str | None = None,
                 dtype: str = "float32", batch_size: int = 16, seed: int = 0,
                 max_peers: int = 8):
        from caitool.render import check_format
        from caitool.training import fit

        options.check()
        check_format(fmt)
        fit.quiet_libraries()  # stderr is the server's log: no library progress bars in it
        self.options, self.fmt, self.max_peers = options, fmt, max_peers
        self.rm = self.judge = None
        if options.uses_judge:
            self.rules, self.settings = options.judge.load()  # before any model loads
            self.settings.seed = seed
        if options.uses_rm:
            self.rm = self._reward_model(device, dtype, batch_size)
        if options.uses_judge:
            self.judge = options.judge.create_backend()
        if self.fmt == "auto":
            self.fmt = "chat"

    def _reward_model(self, device: str | None, dtype: str, batch_size: int):
        import torch

        from caitool.errors import CaitoolError
        from caitool.render import has_chat_template, resolve_format
        from caitool.training.critic_free import reward_model_path
        from caitool.training.rl_rewards import RewardModelReward, reward_tokenizer

        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if dtype not in dtypes:
            raise CaitoolError(f"--dtype must be {', '.join(dtypes)}, not '{dtype}'")
        path = reward_model_path(self.options)
        name = self.options.reward_model
        if self.fmt == "auto":
            self.fmt = resolve_format("auto", has_chat_template(reward_tokenizer(path, name, "raw")),
                                      name)
        model = RewardModelReward(path, name, self.fmt, dtypes[dtype], batch_size)
        return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def describe(self) -> str:
        parts = []
        if self.rm is not None:
            parts.append(f"{self.options.rm_weight:g} x reward model {self.options.reward_model}")
        if self.judge is not None:
            parts.append(f"{self.options.judge_weight:g} x judge {self.options.judge.model} "
                         f"({self.options.judge.backend}, constitution {self.rules.name})")
        return " + ".join(parts) + f", {self.fmt} format"

    def __call__(self, items: list[Item]) -> list[Scored]:
        keys = [item.key for item in items]
        rm = self._rm(items, keys) if self.rm is not None else [None] * len(items)
        judge = self._judge(items, keys) if self.judge is not None else [None] * len(items)
        weights = (self.options.rm_weight, self.options.judge_weight)
        return [Scored(sum(w * v for w, v in zip(weights, (r, j)) if v is not None), r, j)
                for r, j in zip(rm, judge, strict=True)]

    def _rm(self, items: list[Item], keys: list[str]) -> list[float]:
        from caitool.serving.protocol import PayloadError

        responses = [item.response for item in items]
        limit = getattr(self.rm.model.config, "max_position_embeddings", None)
        for index, (key, response) in enumerate(zip(keys, responses, strict=True)):
            length = len(self.rm.sequence(key, response))
            if limit and length > limit:
                raise PayloadError(413, f"response {index} is {length} tokens with its prompt; the "
                                        f"reward model reads at most {limit}")
        return self.rm([None] * len(items), responses, keys)

    def _judge(self, items: list[Item], keys: list[str]) -> list[float | None]:
        from caitool.stages.judging import PairItem
        from caitool.training.judge_reward import judged_rewards
        from caitool.training.rl_rewards import response_text

        responses = [response_text(item.response, self.fmt) for item in items]
        pairs: list[PairItem] = []
        owners: list[tuple[int, int | None]] = []   # (first's index, second's index or None)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            if item.reference is not None:
                pairs.append(PairItem(pair_id(keys[index], responses[index], item.reference),
                                      item.messages, responses[index], item.reference))
                owners.append((index, None))
            else:
                groups[keys[index]].append(index)
        alone = 0
        for members in groups.values():
            alone += len(members) == 1
            for i, j in peer_pairs(members, self.max_peers):
                pairs.append(PairItem(pair_id(keys[i], responses[i], responses[j]),
                                      items[i].messages, responses[i], responses[j]))
                owners.append((i, j))
        if alone:
            console.warn(NAME, f"{alone} response(s) had no reference answer and no other sample "
                               "of their prompt in the batch: no judge reward for them")
        rewards, _ = judged_rewards(self.judge, self.rules, self.settings, pairs) if pairs \
            else ([], [])
        sums: list[list[float]] = [[] for _ in items]
        failed = 0
        for (i, j), reward in zip(owners, rewards, strict=True):
            if reward is None:
                failed += 1
                continue
            sums[i].append(reward)
            if j is not None:
                sums[j].append(-reward)  # the same verdict seen from the other response
        if failed:
            console.warn(NAME, f"the judge could not judge {failed} pair(s): they count 0")
        return [sum(values) / len(values) if values else None for values in sums]

    def close(self) -> None:
        if self.judge is not None and hasattr(self.judge, "close"):
            self.judge.close()

