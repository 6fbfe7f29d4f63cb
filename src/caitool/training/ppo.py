"""The paper's RL stage: PPO of a policy against a reward model, with TRL's PPOTrainer.

TRL 1.12 is the last release with PPO (``trl.experimental.ppo``; TRL 1.13 removed it, and
train-ppo then stops with one line, see :func:`require_ppo`). It hands the reward model
the policy's token ids, so both must share one tokenizer: that is checked up front. The
reward for a response is the reward model's score minus ``kl_coef`` times the per-token KL to
the starting policy (TRL's ``objective/kl`` metric). Generation stops at the tokenizer's
end-of-sequence token, the response is cut there before it is scored, and a response that
never ends loses ``missing_eos_penalty`` from its score, so running on to the length limit
is never a way to collect reward. Responses may be as long as ``caitool generate``'s (the
length the SFT data was written at), and a run whose responses mostly fail to end is told
so, since the penalty then teaches short answers whatever they say. The value model starts
from the reward model (its weights already read a response's quality), unless another is
given.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from caitool import console
from caitool.backends.base import SamplingParams
from caitool.errors import CaitoolError
from caitool.models import check_loadable, local_model
from caitool.render import has_chat_template, policy_prompt_ids, resolve_format
from caitool.schema import check_prompt, conversation
from caitool.training import args, data, fit

VALUE_DIR = "value_model"
# --max-length cuts prompts and --max-steps counts rollout batches: not TRL's fields here.
SHORTCUTS = tuple(name for name in args.SHORTCUTS if name not in ("max_length", "max_steps"))
OWNED = {"sft_model_path": "-m/--model", "reward_model_path": "-r/--reward-model"}
# Responses as long as `caitool generate` writes them (the SFT data's length): a shorter
# limit cuts real answers, and the missing-EOS penalty then punishes them for it.
RESPONSE_LENGTH = SamplingParams.max_new_tokens
# The TRL releases with PPO, within the range pyproject.toml allows.
LAST_WITH_PPO, PPO_RANGE = "1.12", ">=1.0,<1.13"


def require_ppo() -> None:
    """Ends train-ppo with one line, before any work, where the installed TRL has no PPO."""
    # PPO is only in trl.experimental, which says so on import unless told it is known.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import trl.experimental.ppo  # noqa: F401
    except ImportError:
        from importlib.metadata import version

        raise CaitoolError(
            f"PPO is not in the installed trl {version('trl')} (TRL 1.13 removed it; trl "
            f"{LAST_WITH_PPO} is the last release with it: pip install 'trl{PPO_RANGE}'), "
            "or train with train-rloo, train-grpo or train-dpo") from None


def config_class() -> type:
    require_ppo()
    from trl.experimental.ppo import PPOConfig

    return PPOConfig


def check_same_tokenizer(policy_tok, other_tok, policy: str, other: str, role: str) -> None:
    """PPO scores the policy's token ids with the other model: their vocabularies must agree."""
    mine, theirs = policy_tok.get_vocab(), other_tok.get_vocab()
    if mine != theirs:
        differ = sum(1 for token, i in mine.items() if theirs.get(token) != i)
        raise CaitoolError(
            f"the {role} '{other}' has a different tokenizer from the policy '{policy}' "
            f"({len(theirs)} vs {len(mine)} tokens, {differ} of the policy's tokens map "
            f"differently): PPO gives the {role} the policy's token ids, so both must share one "
            f"tokenizer (train the reward model from the policy: caitool train-rm -m {policy})")
    for name in ("eos_token_id", "pad_token_id"):
        a, b = getattr(policy_tok, name), getattr(other_tok, name)
        if b is not None and a != b:
            raise CaitoolError(f"the {role} '{other}' has {name} {b}, the policy '{policy}' "
                               f"has {a}: they must share one tokenizer")


def check_reward_config(path: str) -> None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise CaitoolError(f"cannot load the reward model '{path}': {fit.first_line(exc)}") from None
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures) \
            or getattr(config, "num_labels", None) != 1:
        raise CaitoolError(
            f"'{path}' is not a reward model (a sequence-classification model with one output); "
            "train one with caitool train-rm")


class _Continue(TrainerCallback):
    """Keeps checkpoints resumable: saves the value model beside the policy in each
    checkpoint, and on a resumed run counts steps on from where the checkpoint left off."""

    def __init__(self, done_steps: int = 0, done_episodes: int = 0):
        self.trainer = None
        self.done_steps, self.done_episodes = done_steps, done_episodes

    def on_train_begin(self, args, state, control, **kwargs):
        # PPOTrainer resets the counters just before this call.
        state.global_step = self.done_steps
        state.episode = self.done_episodes
        state.max_steps = self.done_steps + args.num_total_batches

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer is None or not trainer.accelerator.is_main_process:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            value = trainer.accelerator.unwrap_model(trainer.model).value_model
            value.save_pretrained(checkpoint / VALUE_DIR)


class _Ends(TrainerCallback):
    """Counts the rollouts' responses that end, by TRL's own test for the missing-EOS
    penalty (the end-of-sequence token is in the response once cut at the stop token), and
    warns once, with the figures, the first time fewer than half of a logging step's do."""

    def __init__(self, command: str, eos_token_id: int, penalty: float | None, length: int):
        self.command, self.eos_token_id = command, eos_token_id
        self.penalty, self.length = penalty, length
        self.ended = self.total = self.run_ended = self.run_total = 0
        self.warned = False

    def count(self, responses) -> None:
        ended = int((responses == self.eos_token_id).any(dim=-1).sum())
        self.ended += ended
        self.total += responses.shape[0]
        self.run_ended += ended
        self.run_total += responses.shape[0]

    @contextlib.contextmanager
    def watching(self):
        """TRL's PPO loop cuts each rollout's responses with one module-level function, the
        only place the responses are in reach: count them there while training runs."""
        from trl.experimental.ppo import ppo_trainer

        original = ppo_trainer.truncate_response

        def counted(stop_token_id, pad_token_id, responses):
            cut = original(stop_token_id, pad_token_id, responses)
            self.count(cut)
            return cut

        ppo_trainer.truncate_response = counted
        try:
            yield self
        finally:
            ppo_trainer.truncate_response = original

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not self.total:
            return
        logs["ended_fraction"] = self.ended / self.total
        if not self.warned and state.is_world_process_zero and 2 * self.ended < self.total:
            self.warned = True
            console.warn(self.command, f"step {state.global_step}: only {self.ended} of "
                                       f"{self.total} responses ({self.ended / self.total:.0%}) "
                                       f"ended within --max-new-tokens {self.length}: "
                                       f"{self.consequence()} (warned once per run)")
        self.ended = self.total = 0

    def consequence(self) -> str:
        if self.penalty:
            return (f"each unended one loses --missing-eos-penalty {self.penalty:g} whatever it "
                    "says, which teaches short answers; raise --max-new-tokens")
        return "unended ones are scored cut off at the limit; raise --max-new-tokens"

    def summary(self) -> dict[str, Any]:
        if not self.run_total:
            return {}
        fraction = self.run_ended / self.run_total
        if self.warned:
            console.warn(self.command, f"over the run, {self.run_ended} of {self.run_total} "
                                       f"responses ({fraction:.0%}) ended")
        return {"ended_fraction": fraction}


def configure(flags: Any, asked: args.Request, reward_model: str, kl_coef: float | None = None,
              missing_eos_penalty: float | None = None, max_new_tokens: int | None = None,
              temperature: float | None = None) -> args.Settings:
    shortcuts = args.shortcut_values(flags, SHORTCUTS)
    for name, value in (("kl_coef", kl_coef), ("missing_eos_penalty", missing_eos_penalty),
                        ("response_length", max_new_tokens), ("temperature", temperature)):
        if value is not None:
            shortcuts[name] = value
    defaults: dict[str, Any] = {"stop_token": "eos", "missing_eos_penalty": 1.0,
                                "num_sample_generations": 0, "response_length": RESPONSE_LENGTH}
    if asked.sets("stop_token_id"):
        del defaults["stop_token"]  # TRL takes one or the other
    return args.build(config_class(), flags, asked, str(Path(flags.output) / fit.CHECKPOINTS),
                      defaults=defaults, shortcuts=shortcuts,
                      filled={"sft_model_path": fit.model_name(flags), "reward_model_path": reward_model})


def check_models(command: str, flags: Any, policy: str, reward_model: str, value_model: str | None):
    """The policy's tokenizer (from the directory ``policy``), once the reward and value
    models are known to fit it."""
    fit.quiet_libraries()
    tokenizer = fit.load_tokenizer(policy, "policy")
    check_reward_config(reward_model)
    check_same_tokenizer(tokenizer, fit.load_tokenizer(reward_model, "reward model"),
                         flags.model, reward_model, "reward model")
    if value_model and value_model != reward_model:
        check_same_tokenizer(tokenizer, fit.load_tokenizer(value_model, "value model"),
                             flags.model, value_model, "value model")
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        console.warn(command, "the pad token is the end-of-sequence token: PPO masks pad tokens, "
                              "so end-of-sequence tokens inside prompts are masked too")
    return tokenizer


def prompt_rows(command: str, records: list[dict[str, Any]], tokenizer, fmt: str,
                max_length: int | None) -> list[dict[str, Any]]:
    rows, cut = [], 0
    for record in records:
        ids, was_cut = data.keep_end(policy_prompt_ids(tokenizer, conversation(record), fmt),
                                     max_length)
        cut += was_cut
        rows.append({"input_ids": ids})
    if cut:
        console.warn(command, f"{cut} prompt(s) longer than {max_length} tokens were cut "
                              "to their last tokens")
    return rows


def fit_rollouts(command: str, settings: args.Settings, prompts: int) -> int:
    """Processes x batch size x accumulation steps: the prompts one rollout batch takes."""
    from accelerate import PartialState

    config = settings.args
    world = PartialState().num_processes
    rollout = config.per_device_train_batch_size * config.gradient_accumulation_steps
    fitting = prompts // (world * config.gradient_accumulation_steps)
    if prompts < rollout * world and fitting >= 1 \
            and "per_device_train_batch_size" not in settings.values:
        # Only TRL's default batch size was in the way: a few prompts still make a run.
        console.warn(command, f"only {prompts} prompts: batch size {fitting} instead of "
                              f"{config.per_device_train_batch_size}")
        config.per_device_train_batch_size = fitting
        rollout = fitting * config.gradient_accumulation_steps
    if prompts < rollout * world:
        raise CaitoolError(
            f"{prompts} prompts cannot fill one rollout batch of {rollout * world} "
            f"(--batch-size x --gradient-accumulation-steps x processes): give more prompts "
            "or a smaller --batch-size")
    return rollout * world


def train(command: str, asked: args.Request, flags: Any, reward_model: str,
          value_model: str | None = None, kl_coef: float | None = None,
          missing_eos_penalty: float | None = None, max_new_tokens: int | None = None,
          temperature: float | None = None) -> None:
    args.check_outputs(flags)
    if not reward_model:
        raise CaitoolError("no reward model given: pass -r/--reward-model")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise CaitoolError("--max-new-tokens must be at least 1")
    if missing_eos_penalty is not None and missing_eos_penalty < 0:
        raise CaitoolError("--missing-eos-penalty must be >= 0")
    sources = data.read_sources(command, asked.inputs, check_prompt, flags.skip_invalid)
    records = [record for source in sources for record in source.records]
    counts = data.by_file([source.name for source in sources],
                          prompts=[len(source.records) for source in sources])
    settings = configure(flags, asked, reward_model, kl_coef, missing_eos_penalty,
                         max_new_tokens, temperature)
    config = settings.args
    if config.stop_token is None and config.stop_token_id is None:
        console.warn(command, "no stop token (stop_token and stop_token_id unset): responses are "
                              "scored at full length, wherever they end")

    # Resolved only now (GGUF files and built-in names are converted the first time), so
    # that bad records or flags cost no model.
    policy_path = fit.base_model(flags)
    reward_path = local_model(reward_model)
    check_loadable(reward_path, reward_model)
    value_source = local_model(value_model) if value_model else None
    if value_source:
        check_loadable(value_source, value_model)
    tokenizer = check_models(command, flags, policy_path, reward_path, value_source)
    fmt = resolve_format(flags.format, has_chat_template(tokenizer), flags.model)
    rows = prompt_rows(command, records, tokenizer, fmt, flags.max_length)
    rollout = fit_rollouts(command, settings, len(rows))
    if flags.max_steps is not None:
        config.total_episodes = flags.max_steps * rollout
    console.info(command, f"{len(rows)} prompts ({fmt} format), rollout batch {rollout}"
                          + (f"; by file: {data.describe(counts)}" if len(counts) > 1 else ""))

    checkpoint = fit.resume_checkpoint(command, flags)
    done_steps = done_episodes = 0
    if checkpoint is not None:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        done_steps, done_episodes = state.get("global_step", 0), state.get("episode", 0)
        total = config.total_episodes or int(config.num_train_epochs * len(rows))
        config.total_episodes = max(total - done_episodes, 0)
        console.warn(command, f"PPO resumed at step {done_steps}: policy and value weights "
                              "continue; the optimizer and learning-rate schedule start afresh; "
                              "the reference is still the starting policy")

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOTrainer

    def load(cls, path, what, **kwargs):
        try:
            return cls.from_pretrained(path, dtype=torch.float32, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a model that will not load is the user's to fix
            raise CaitoolError(f"cannot load the {what} '{path}': {fit.first_line(exc)}") from None

    peft_config = fit.peft_config(settings, "CAUSAL_LM")
    ref_policy = None
    if checkpoint is None:
        policy = load(AutoModelForCausalLM, policy_path, "policy")
    elif settings.lora is not None:
        from peft import PeftModel

        policy = PeftModel.from_pretrained(load(AutoModelForCausalLM, policy_path, "policy"),
                                           checkpoint, is_trainable=True)
        peft_config = None
    else:
        policy = load(AutoModelForCausalLM, checkpoint, "policy checkpoint")
        ref_policy = load(AutoModelForCausalLM, policy_path, "policy")
    reward = load(AutoModelForSequenceClassification, reward_path, "reward model", num_labels=1)
    saved_value = Path(checkpoint) / VALUE_DIR if checkpoint else None
    value_path = str(saved_value) if saved_value and saved_value.is_dir() else \
        (value_source or reward_path)
    value = load(AutoModelForSequenceClassification, value_path, "value model", num_labels=1)

    padding_side = tokenizer.padding_side
    continuing = _Continue(done_steps, done_episodes)
    ends = _Ends(command, tokenizer.eos_token_id, config.missing_eos_penalty,
                 config.response_length)

    def make_trainer():
        # Prompts are padded on the left so that every response starts at the same position.
        tokenizer.padding_side = "left"
        trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy,
                             ref_model=ref_policy, reward_model=reward,
                             train_dataset=Dataset.from_list(rows), value_model=value,
                             peft_config=peft_config, callbacks=[continuing, ends])
        continuing.trainer = trainer
        return trainer

    def summary(trainer, model, metrics) -> dict[str, Any]:
        tokenizer.padding_side = padding_side  # the saved tokenizer keeps its own
        scores = [line["objective/scores"] for line in metrics.lines
                  if line.get("objective/scores") is not None]
        kls = [line["objective/kl"] for line in metrics.lines
               if line.get("objective/kl") is not None]
        extra: dict[str, Any] = {"inputs": asked.inputs, **data.lineage(sources), "format": fmt,
                                 "prompts": len(rows),
                                 "by_file": counts, "reward_model": reward_model,
                                 "value_model": value_path, "kl_coef": config.kl_coef,
                                 "missing_eos_penalty": config.missing_eos_penalty,
                                 "response_length": config.response_length, **ends.summary()}
        if scores:
            extra.update({"first_score": scores[0], "last_score": scores[-1],
                          "last_kl": kls[-1] if kls else None})
            console.info(command, f"mean reward {scores[0]:.3f} -> {scores[-1]:.3f}, "
                                  f"KL to the start {kls[-1] if kls else float('nan'):.3f}")
        return extra

    with ends.watching():
        fit.fit(command, flags, settings, tokenizer, make_trainer, "PPO", summary,
                train=config.total_episodes > 0, data_line={"by_file": counts},
                model_of=lambda trainer: trainer.accelerator.unwrap_model(trainer.model).policy)
