"""Direct AI feedback as the reward: the feedback model judges each sampled response, with no
reward model in between (Lee et al. 2023's "direct RLAIF", in the paper's pairwise form).

Each response is compared with a reference answer, the starting policy's own answer to the
same prompt, generated once before training and cached in the output directory
(``reference_answers.jsonl``; a resumed or repeated run reuses it). The comparison is the one
``caitool compare`` makes (:mod:`caitool.stages.judging`): a comparison principle sampled
per response, the two answers as options (A) and (B), the label from the options'
log-probabilities, both orders judged and averaged. The reward is that soft label rescaled
to [-1, 1]: ``2 * P(response better than the reference) - 1``, so 0 is "as good as where the
policy started". Every batch of responses is one batched ``score()`` call to the judge's
backend (in-process hf or vLLM, or an OpenAI-compatible server for a large judge).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool import console
from caitool.backends.base import Backend, SamplingParams
from caitool.constitution import Constitution
from caitool.errors import CaitoolError
from caitool.io.files import replacing
from caitool.stages.judging import JudgeSettings, Judgment, PairItem, judge_each
from caitool.training.rl_rewards import response_text

REFERENCES = "reference_answers.jsonl"


@dataclass
class JudgeOptions:
    """The feedback model and how it is asked."""

    model: str | None = None
    backend: str = "hf"
    base_url: str | None = None
    constitution: str = "harmless"
    principles: int = 1                 # comparison principles sampled per response, averaged

    def load(self) -> tuple[Constitution, JudgeSettings]:
        """The constitution and judging settings, checked (before any model loads)."""
        from caitool import constitution as constitutions

        if not self.model:
            raise CaitoolError("--reward judge needs the feedback model: pass --judge MODEL")
        rules = constitutions.load(self.constitution)
        settings = JudgeSettings(both_orders=True, principles=self.principles)
        settings.check(rules)
        return rules, settings

    def backend_options(self) -> dict[str, Any]:
        if self.base_url:
            return {"base_url": self.base_url}
        if self.backend == "hf":
            from accelerate import PartialState

            # Each training process judges its own responses on its own device.
            return {"device": str(PartialState().device)}
        return {}

    def create_backend(self) -> Backend:
        from caitool.backends import registry

        return registry.create(self.backend, self.model, **self.backend_options())


def soft_reward(p_better: float) -> float:
    """The soft label P(response better than the reference), rescaled to [-1, 1]."""
    return 2.0 * p_better - 1.0


class JudgeReward:
    """A TRL reward function: the judge's verdict on each completion against its prompt's
    reference answer. A completion the backend failed to judge for good gets None (TRL then
    leaves it out of the advantage), and is counted in the ``judge/failed`` metric."""

    __name__ = "judge"

    def __init__(self, backend: Backend, constitution: Constitution, settings: JudgeSettings,
                 references: dict[str, str], fmt: str, process: int = 0):
        self.backend, self.constitution, self.settings = backend, constitution, settings
        self.references, self.fmt, self.process = references, fmt, process
        self.calls = 0

    def __call__(self, prompts: list[Any], completions: list[Any], conversation: list[str],
                 trainer_state: Any = None, log_metric: Any = None, **_: Any) -> list[float | None]:
        self.calls += 1
        # The principle is sampled per response, seeded by where in training it was drawn.
        step = getattr(trainer_state, "global_step", self.calls)
        items = [PairItem(id=f"{step}:{self.process}:{i}", messages=json.loads(key),
                          first=response_text(completion, self.fmt),
                          second=self.references[key])
                 for i, (key, completion) in enumerate(zip(conversation, completions, strict=True))]
        rewards, judgments = judged_rewards(self.backend, self.constitution, self.settings, items)
        done = [j for j in judgments if j is not None]
        if log_metric is not None:
            # Every process logs the same names, in the same order (TRL gathers them).
            log_metric("judge/orders_agree", sum(j.agree for j in done) / len(done) if done else 0.0)
            log_metric("judge/failed", float(len(judgments) - len(done)))
        return rewards


def judged_rewards(backend: Backend, constitution: Constitution, settings: JudgeSettings,
                   items: list[PairItem]) -> tuple[list[float | None], list[Judgment | None]]:
    """The reward of each item's ``first`` response against its ``second`` (one batched
    judging call), and the judgments; None for an item that could not be judged. The
    trainers and ``caitool serve-reward`` both reward through here."""
    judgments, _ = judge_each(backend, constitution, items, settings)
    return [None if j is None else soft_reward(j.p_first) for j in judgments], judgments


# -- reference answers -------------------------------------------------------------------------


def _read_cache(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            found[record["conversation"]] = record["response"]
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a kill: that answer is made again
    return found


def reference_answers(command: str, policy: str, policy_name: str, keys: list[str], fmt: str,
                      params: SamplingParams, output: str) -> dict[str, str]:
    """The starting policy's answer to each conversation (``keys``: JSON), from the cache in
    ``output`` or generated now (by the main process; the others wait and read the cache)."""
    from accelerate import PartialState

    from caitool.backends import registry
    from caitool.stages.supervised import Sampler, generate

    path = Path(output) / REFERENCES
    state = PartialState()
    cached = _read_cache(path)
    missing = sorted(set(keys) - set(cached))
    if missing and state.is_main_process:
        console.info(command, f"answering {len(missing)} prompt(s) with the starting policy, once: "
                              f"the judge's reference answers (kept in {path})")
        records = [{"id": f"reference-{i}", "messages": json.loads(key)}
                   for i, key in enumerate(missing)]
        with registry.create("hf", policy, device=str(state.device)) as backend:
            result = generate(Sampler(backend, params, fmt), records)
        if result.failed:
            reason = next(iter(result.failed.values()))
            raise CaitoolError(f"the starting policy '{policy_name}' could not answer "
                               f"{len(result.failed)} prompt(s) for reference: {reason}")
        for key, record in zip(missing, records, strict=True):
            cached[key] = record["response"]
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as partial, open(partial, "w", encoding="utf-8") as handle:
            for key, response in cached.items():
                handle.write(json.dumps({"conversation": key, "response": response},
                                        ensure_ascii=False) + "\n")
    state.wait_for_everyone()
    if not state.is_main_process:
        cached = _read_cache(path)
    return {key: cached[key] for key in keys}
