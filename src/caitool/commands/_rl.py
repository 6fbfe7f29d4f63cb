"""Flags the critic-free RL commands (train-rloo, train-grpo) share: where the reward comes
from, and the sampling and KL knobs with names that train-ppo uses too."""

from __future__ import annotations

from dataclasses import dataclass

from caitool.commands._flags import flag


@dataclass
class RLFlags:
    reward_model: str | None = flag(None, "-r", "--reward-model",
                                    help="The reward model (from train-rm; any tokenizer), for --reward rm "
                                         "or rm+judge.")
    reward: str = flag("rm", "--reward",
                       help="What rewards a response: rm (the reward model's score), judge (the "
                            "feedback model's verdict against the starting policy's answer, in "
                            "[-1, 1]) or rm+judge (their weighted sum).")
    rm_weight: float = flag(1.0, "--rm-weight", help="Weight of the reward model's score in rm+judge.")
    judge_weight: float = flag(1.0, "--judge-weight", help="Weight of the judge's reward in rm+judge.")
    judge: str | None = flag(None, "--judge",
                             help="The feedback model for --reward judge: a local directory, a hub id, a "
                                  "GGUF file, a built-in name, or the model a server serves.")
    judge_backend: str = flag("hf", "--judge-backend",
                              help="Where the judge runs: hf (in-process), vllm, or openai (any "
                                   "compatible server, with --judge-base-url).")
    judge_base_url: str | None = flag(None, "--judge-base-url",
                                      help="openai judge backend: the server's URL, e.g. "
                                           "http://127.0.0.1:8000/v1.")
    constitution: str = flag("harmless", "-c", "--constitution", envvar="CAITOOL_CONSTITUTION",
                             help="The judge's comparison principles: a built-in constitution's "
                                  "name or a file/directory.")
    principles: int = flag(1, "--principles",
                           help="Comparison principles sampled per response and averaged (0: all).")
    kl_coef: float | None = flag(None, "--kl-coef",
                                 help="Weight of the KL to the starting policy (TRL's beta; default 0.05; "
                                      "0 loads no reference model).")
    group_size: int | None = flag(None, "--group-size",
                                  help="Responses sampled per prompt, each other's baseline (TRL's "
                                       "num_generations; TRL default: RLOO 2, GRPO 8).")
    max_new_tokens: int | None = flag(None, "--max-new-tokens",
                                      help="Most tokens per response (default: caitool generate's "
                                           "default, the length the SFT data was written at).")
    temperature: float | None = flag(None, "--temperature",
                                     help="Sampling temperature of the responses (TRL default 1.0).")
    missing_eos_penalty: float = flag(1.0, "--missing-eos-penalty",
                                      help="Taken from the reward of a response that never ends; 0 for none.")

    def options(self):
        """The core's options (:class:`caitool.training.critic_free.RLOptions`)."""
        from caitool.training.critic_free import RLOptions
        from caitool.training.judge_reward import JudgeOptions

        judge = JudgeOptions(model=self.judge, backend=self.judge_backend,
                             base_url=self.judge_base_url, constitution=self.constitution,
                             principles=self.principles)
        return RLOptions(reward=self.reward, reward_model=self.reward_model,
                         rm_weight=self.rm_weight, judge_weight=self.judge_weight, judge=judge,
                         kl_coef=self.kl_coef, group_size=self.group_size,
                         max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                         missing_eos_penalty=self.missing_eos_penalty)
