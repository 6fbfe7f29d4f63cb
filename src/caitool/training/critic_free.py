"""RL-CAI without a value model: TRL's RLOOTrainer and GRPOTrainer on prompt records.

Both sample a group of responses per prompt (``--group-size``, TRL's ``num_generations``)
and use the group itself as the baseline: RLOO takes each response's reward minus the mean
of the others' (leave-one-out), GRPO the reward's distance from the group's mean in units of
its spread. Neither needs PPO's value model, and the reward model need not share the
policy's tokenizer: the reward is a plain function of the text (:mod:`rl_rewards`).

The reward is the reward model's score (``--reward rm``), the feedback model's verdict
against the starting policy's answer (``--reward judge``, :mod:`judge_reward`), or a
weighted sum of both (``rm+judge``), less ``--missing-eos-penalty`` for a response that
never ends. The KL to the starting policy enters as TRL does it: RLOO subtracts
``beta`` times the response's summed log-ratio from its reward, GRPO adds ``beta`` times a
per-token KL estimate to the loss; ``beta`` 0 loads no reference model at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool import console
from caitool.backends.base import SamplingParams
from caitool.errors import CaitoolError
from caitool.models import check_loadable, local_model
from caitool.render import policy_prompt_ids
from caitool.schema import check_prompt, conversation
from caitool.training import args, data, fit
from caitool.training.judge_reward import JudgeOptions

REWARDS = ("rm", "judge", "rm+judge")
# --max-length leaves out long prompts: no such field in these configs.
SHORTCUTS = tuple(name for name in args.SHORTCUTS if name != "max_length")
OWNED = {"reward_weights": "--rm-weight and --judge-weight"}
# Responses as long as `caitool generate` writes them, as train-ppo's.
RESPONSE_LENGTH = SamplingParams.max_new_tokens
# The paper's reward keeps the policy near where it started (TRL's GRPO default is 0).
KL_COEF = 0.05


@dataclass
class Algorithm:
    """What differs between the trainers: names and TRL classes (imported when asked for)."""

    name: str                              # "RLOO", "GRPO"
    config_class: Callable[[], type]
    trainer_class: Callable[[], type]


@dataclass
class RLOptions:
    reward: str = "rm"
    reward_model: str | None = None
    rm_weight: float = 1.0
    judge_weight: float = 1.0
    judge: JudgeOptions = field(default_factory=JudgeOptions)
    kl_coef: float | None = None
    group_size: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    missing_eos_penalty: float = 1.0

    @property
    def uses_rm(self) -> bool:
        return "rm" in self.reward.split("+")

    @property
    def uses_judge(self) -> bool:
        return "judge" in self.reward.split("+")

    def check(self) -> None:
        if self.reward not in REWARDS:
            raise CaitoolError(f"--reward must be {', '.join(REWARDS)}, not '{self.reward}'")
        if self.uses_rm and not self.reward_model:
            raise CaitoolError("no reward model given: pass -r/--reward-model (or --reward judge "
                               "to reward with the feedback model instead)")
        if not self.uses_rm and self.reward_model:
            raise CaitoolError("-r/--reward-model is unused with --reward judge "
                               "(--reward rm+judge mixes the two)")
        if self.judge.model and not self.uses_judge:
            raise CaitoolError("--judge is unused with --reward rm (--reward judge or rm+judge "
                               "reward with it)")
        for name, value in (("--rm-weight", self.rm_weight), ("--judge-weight", self.judge_weight),
                            ("--missing-eos-penalty", self.missing_eos_penalty)):
            if not math.isfinite(value) or value < 0:
                raise CaitoolError(f"{name} must be a number >= 0, not {value}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise CaitoolError("--max-new-tokens must be at least 1")
        if self.group_size is not None and self.group_size < 2:
            raise CaitoolError("--group-size must be at least 2: the group is the baseline")
        if self.kl_coef is not None and self.kl_coef < 0:
            raise CaitoolError("--kl-coef must be >= 0")

    def weights(self) -> list[float]:
        """TRL's reward_weights, in the order of :func:`reward_functions`."""
        return ([self.rm_weight] if self.uses_rm else []) \
            + ([self.judge_weight] if self.uses_judge else []) \
            + ([1.0] if self.missing_eos_penalty else [])


def configure(flags: Any, asked: args.Request, algorithm: Algorithm,
              options: RLOptions) -> args.Settings:
    config_cls = algorithm.config_class()
    shortcuts = args.shortcut_values(flags, SHORTCUTS)
    for name, value in (("beta", options.kl_coef), ("num_generations", options.group_size),
                        ("max_completion_length", options.max_new_tokens),
                        ("temperature", options.temperature)):
        if value is not None:
            shortcuts[name] = value
    defaults: dict[str, Any] = {"beta": KL_COEF, "max_completion_length": RESPONSE_LENGTH}
    if not (asked.sets("per_device_train_batch_size") or "per_device_train_batch_size" in shortcuts):
        # A step's completions must hold whole groups: TRL's default batch size, rounded to
        # a multiple of the group size.
        given = {**asked.file, **shortcuts, **asked.flags}
        fields = {f.name: f.default for f in config_cls.__dataclass_fields__.values()}
        group = given.get("num_generations", fields["num_generations"]) or 2
        batch = fields["per_device_train_batch_size"]
        defaults["per_device_train_batch_size"] = group * max(1, batch // group)
    return args.build(config_cls, flags, asked, str(Path(flags.output) / fit.CHECKPOINTS),
                      defaults=defaults, shortcuts=shortcuts,
                      filled={"reward_weights": options.weights()})


def prompt_rows(command: str, records: list[dict[str, Any]], tokenizer, fmt: str,
                max_length: int | None) -> list[dict[str, Any]]:
    """TRL's prompt-only rows (a string, or messages in chat format), with the conversation
    as JSON for the reward functions; prompts over ``max_length`` tokens are left out."""
    from caitool.render import raw_reply_prompt

    rows, long = [], 0
    for record in records:
        messages = conversation(record)
        if max_length is not None and len(policy_prompt_ids(tokenizer, messages, fmt)) > max_length:
            long += 1
            continue
        prompt = messages if fmt == "chat" else raw_reply_prompt(messages)
        rows.append({"prompt": prompt, "conversation": json.dumps(messages, ensure_ascii=False)})
    if long:
        console.warn(command, f"{long} prompt(s) longer than --max-length {max_length} tokens "
                              "were left out")
    if not rows:
        raise CaitoolError(f"no prompts left to train on: every one is over --max-length {max_length}")
    return rows


def check_batches(settings: args.Settings, prompts: int) -> int:
    """Prompts one generation batch takes (batch size x accumulation x processes / group
    size); an error when there are fewer prompts than that."""
    config = settings.args
    needed = config.generation_batch_size // config.num_generations
    if prompts < needed:
        raise CaitoolError(
            f"{prompts} prompts cannot fill one generation batch of {needed} prompts x "
            f"{config.num_generations} responses (--batch-size {config.per_device_train_batch_size}"
            f" responses x --gradient-accumulation-steps x processes): give more prompts or a "
            "smaller --batch-size")
    return needed


def reward_model_path(options: RLOptions) -> str:
    """The reward model's directory, once it is known to be a one-output classifier."""
    from caitool.training.rl_rewards import check_reward_model

    path = local_model(options.reward_model)
    check_loadable(path, options.reward_model)
    check_reward_model(path, options.reward_model)
    return path


def reward_functions(command: str, flags: Any, options: RLOptions, settings: args.Settings,
                     policy: str, tokenizer, fmt: str, rows: list[dict[str, Any]]) -> list[Any]:
    """The reward functions, in the order of :meth:`RLOptions.weights`; the judge's reference
    answers are made (or read from the cache) here."""
    import torch

    from caitool.training import judge_reward, rl_rewards

    config = settings.args
    functions: list[Any] = []
    if options.uses_rm:
        dtype = torch.bfloat16 if config.bf16 else torch.float32
        functions.append(rl_rewards.RewardModelReward(
            reward_model_path(options), options.reward_model, fmt, dtype,
            config.per_device_eval_batch_size))
    if options.uses_judge:
        from accelerate import PartialState

        rules, judge_settings = options.judge.load()
        params = SamplingParams(max_new_tokens=config.max_completion_length,
                                temperature=config.temperature, top_p=config.top_p,
                                top_k=config.top_k or 0,
                                repetition_penalty=config.repetition_penalty, seed=config.seed)
        references = judge_reward.reference_answers(
            command, policy, flags.model, [row["conversation"] for row in rows], fmt, params,
            flags.output)
        judge_settings.seed = config.seed
        functions.append(judge_reward.JudgeReward(options.judge.create_backend(), rules,
                                                  judge_settings, references, fmt,
                                                  PartialState().process_index))
    if options.missing_eos_penalty:
        functions.append(rl_rewards.Unended(tokenizer.eos_token_id, options.missing_eos_penalty))
    return functions


def _series(metrics, key: str) -> list[float]:
    return [line[key] for line in metrics.lines if line.get(key) is not None]


def train(command: str, asked: args.Request, flags: Any, algorithm: Algorithm,
          options: RLOptions) -> None:
    args.check_outputs(flags)
    options.check()
    if options.uses_judge:
        options.judge.load()  # a bad constitution or judge setting costs no model
    sources = data.read_sources(command, asked.inputs, check_prompt, flags.skip_invalid)
    records = [record for source in sources for record in source.records]
    counts = data.by_file([source.name for source in sources],
                          prompts=[len(source.records) for source in sources])
    settings = configure(flags, asked, algorithm, options)
    config = settings.args
    if options.uses_rm:
        reward_path = reward_model_path(options)  # before the policy: a wrong one costs nothing

    policy = fit.base_model(flags)
    tokenizer, fmt = fit.tokenizer_and_format(flags, policy)
    if options.uses_rm:
        from caitool.training.rl_rewards import reward_tokenizer

        reward_tokenizer(reward_path, options.reward_model, fmt)
    rows = prompt_rows(command, records, tokenizer, fmt, flags.max_length)
    per_batch = check_batches(settings, len(rows))
    console.info(command, f"{len(rows)} prompts ({fmt} format), {per_batch} prompt(s) x "
                          f"{config.num_generations} responses per generation batch"
                          + (f"; by file: {data.describe(counts)}" if len(counts) > 1 else ""))
    functions = reward_functions(command, flags, options, settings, policy, tokenizer, fmt, rows)
    names = [f.__name__ for f in functions]

    from datasets import Dataset

    dataset = Dataset.from_list(rows)

    def make_trainer():
        trainer = algorithm.trainer_class()(
            model=policy, reward_funcs=functions, args=config, train_dataset=dataset,
            processing_class=tokenizer, peft_config=fit.peft_config(settings, "CAUSAL_LM"))
        for function in functions:
            if hasattr(function, "to"):
                function.to(trainer.accelerator.device)
        return trainer

    def summary(trainer, model, metrics) -> dict[str, Any]:
        rewards, kls = _series(metrics, "reward"), _series(metrics, "kl")
        clipped = _series(metrics, "completions/clipped_ratio")
        extra: dict[str, Any] = {
            "inputs": asked.inputs, **data.lineage(sources), "format": fmt, "prompts": len(rows),
            "by_file": counts,
            "algorithm": algorithm.name, "reward": options.reward,
            "reward_functions": dict(zip(names, options.weights(), strict=True)),
            "reward_model": options.reward_model if options.uses_rm else None,
            "judge": options.judge.model if options.uses_judge else None,
            "constitution": options.judge.constitution if options.uses_judge else None,
            "kl_coef": config.beta, "group_size": config.num_generations,
            "response_length": config.max_completion_length,
            "missing_eos_penalty": options.missing_eos_penalty}
        if clipped:
            extra["ended_fraction"] = 1 - sum(clipped) / len(clipped)
        if rewards:
            extra.update({"first_reward": rewards[0], "last_reward": rewards[-1],
                          "last_kl": kls[-1] if kls else None})
            kl = f", KL to the start {kls[-1]:.3f}" if kls else ""
            console.info(command, f"mean reward {rewards[0]:.3f} -> {rewards[-1]:.3f}{kl}")
        if clipped and 2 * sum(clipped) > len(clipped):
            console.warn(command, f"over the run, {1 - sum(clipped) / len(clipped):.0%} of responses "
                                  f"ended within --max-new-tokens {config.max_completion_length}"
                                  + ("; each unended one lost --missing-eos-penalty "
                                     f"{options.missing_eos_penalty:g}"
                                     if options.missing_eos_penalty else ""))
        return extra

    fit.fit(command, flags, settings, tokenizer, make_trainer, algorithm.name, summary,
            resume=fit.resume_checkpoint(command, flags), data_line={"by_file": counts})
