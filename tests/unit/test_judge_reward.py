"""Direct AI feedback as the reward, in-process: the judge's soft label against the reference
answer rescaled to [-1, 1], both orders averaged (position bias cancels), inverted
principles, failures; the responses as the rewards read them; the RL options' checks.
(The trainers learn from it end to end in tests/integration/test_train_rloo_grpo.py.)"""

from __future__ import annotations

import json
import math
import re

import pytest

from caitool.backends.base import Backend, OptionScores, RequestsFailed
from caitool.constitution import load
from caitool.errors import CaitoolError
from caitool.stages.judging import JudgeSettings
from caitool.testing.fake import FakeBackend
from caitool.training.critic_free import RLOptions
from caitool.training.judge_reward import JudgeOptions, JudgeReward, _read_cache, soft_reward
from caitool.training.rl_rewards import Unended, ended, response_text

CONVERSATION = json.dumps([{"role": "user", "content": "Tell me about dogs."}])
REFERENCE = "Dogs are animals."
OPTION = re.compile(r"\(([AB])\) \[\[\[(.*?)\]\]\]", re.S)


class WordJudge(Backend):
    """Scores the option whose response holds ``word`` higher by ``gap``, and (A) higher by
    ``bias`` whatever it holds (a position bias); fails on a response holding "FAIL"."""

    name = "word"

    def __init__(self, word: str = "kind", gap: float = 3.0, bias: float = 0.0):
        super().__init__("word")
        self.word, self.gap, self.bias = word, gap, bias
        self.prompts = 0

    def has_chat_template(self) -> bool:
        return True

    def generate(self, prompts, params):
        raise AssertionError("the reward never generates")

    def score(self, prompts, options):
        self.prompts += len(prompts)
        results, failures = [], {}
        for index, prompt in enumerate(prompts):
            shown = dict(OPTION.findall(prompt.message_dicts()[-1]["content"]))
            if any("FAIL" in text for text in shown.values()):
                failures[index] = "scripted failure"
                results.append(None)
                continue
            a, b = (self.gap * (self.word in shown[letter]) for letter in "AB")
            results.append(OptionScores([a + self.bias, b]))
        if failures:
            raise RequestsFailed(failures, results)
        return results


@pytest.fixture
def rules(tmp_path):
    def write(direction: str):
        path = tmp_path / f"{direction}.yaml"
        path.write_text(f"name: {direction}\ncomparison:\n  - id: {direction}\n"
                        f"    question: Which response is {direction}?\n"
                        f"    direction: {direction}\n")
        return load(str(path))
    return write


def reward(backend, constitution, completions, logged=None):
    function = JudgeReward(backend, constitution, JudgeSettings(), {CONVERSATION: REFERENCE},
                           "chat")
    log = (lambda name, value: logged.append((name, value))) if logged is not None else None
    return function(prompts=[None] * len(completions),
                    completions=[[{"role": "assistant", "content": c}] for c in completions],
                    conversation=[CONVERSATION] * len(completions), log_metric=log)


def test_the_reward_is_the_soft_label_against_the_reference(rules):
    p = 1 / (1 + math.exp(-3.0))
    got = reward(WordJudge(), rules("better"), ["A kind dog.", "A dog.", "Dogs are animals."])
    # Better than the reference, as good as it (a tie), worse than a kind reference below.
    assert got == pytest.approx([2 * p - 1, 0.0, 0.0])
    backend = WordJudge()
    function = JudgeReward(backend, rules("better"), JudgeSettings(),
                           {CONVERSATION: "A kind answer."}, "chat")
    assert function(prompts=[None], completions=[[{"role": "assistant", "content": "No."}]],
                    conversation=[CONVERSATION]) == pytest.approx([1 - 2 * p])
    assert backend.prompts == 2  # one response, both orders, one batched call
    assert soft_reward(1.0) == 1.0 and soft_reward(0.0) == -1.0 and soft_reward(0.5) == 0.0


def test_both_orders_cancel_a_position_bias(rules):
    # A judge that prefers (A) by 2 nats whatever it says: alone it would reward nothing
    # but luck of position; averaged over both orders, a tie is a tie.
    got = reward(WordJudge(bias=2.0), rules("better"), ["A dog.", "A kind dog."])
    p_kind = (1 / (1 + math.exp(-5.0)) + 1 / (1 + math.exp(-1.0))) / 2
    assert got == pytest.approx([0.0, 2 * p_kind - 1])
    # The scripted fake judge prefers a position only: every response earns 0.
    assert reward(FakeBackend("fake"), rules("better"), ["x", "y"]) == pytest.approx([0.0, 0.0])


def test_a_worse_principle_is_inverted(rules):
    # "Which response is worse?" picks the one with the word: the reward turns negative.
    assert reward(WordJudge(), rules("worse"), ["A kind dog."])[0] < -0.9


def test_a_response_that_cannot_be_judged_gets_none_and_is_counted(rules):
    logged: list = []
    got = reward(WordJudge(), rules("better"), ["A kind dog.", "FAIL"], logged)
    assert got[0] > 0.9 and got[1] is None
    assert logged == [("judge/orders_agree", 1.0), ("judge/failed", 1.0)]


def test_responses_as_the_rewards_read_them():
    assert response_text([{"role": "assistant", "content": "Hi."}], "chat") == "Hi."
    # A raw completion stops where the next turn would begin, as `caitool generate` stops it.
    assert response_text(" Hi there.\n\nHuman: and more", "raw") == "Hi there."
    assert ended([5, 9, 2], 2) and not ended([5, 9], 2) and not ended([], 2)
    penalty = Unended(2, 3.0)
    assert penalty(None, None, completion_ids=[[1, 2], [1, 1]]) == [0.0, -3.0]


def test_a_torn_reference_cache_line_is_made_again(tmp_path):
    path = tmp_path / "reference_answers.jsonl"
    path.write_text(json.dumps({"conversation": CONVERSATION, "response": REFERENCE}) + "\n"
                    + '{"conversation": "[]", "resp')
    assert _read_cache(path) == {CONVERSATION: REFERENCE}


@pytest.mark.parametrize("options, message", [
    (RLOptions(), "pass -r/--reward-model"),
    (RLOptions(reward="model"), "--reward must be rm, judge, rm+judge"),
    (RLOptions(reward="judge", reward_model="rm"), "-r/--reward-model is unused"),
    (RLOptions(reward_model="rm", judge=JudgeOptions(model="j")), "--judge is unused"),
    (RLOptions(reward_model="rm", group_size=1), "--group-size must be at least 2"),
    (RLOptions(reward_model="rm", rm_weight=-1), "--rm-weight must be a number >= 0"),
    (RLOptions(reward_model="rm", kl_coef=-0.1), "--kl-coef must be >= 0"),
    (RLOptions(reward_model="rm", max_new_tokens=0), "--max-new-tokens must be at least 1"),
])
def test_rl_options_are_checked(options, message):
    with pytest.raises(CaitoolError, match=re.escape(message)):
        options.check()


def test_reward_weights_follow_the_reward_functions():
    assert RLOptions(reward_model="rm").weights() == [1.0, 1.0]
    assert RLOptions(reward="rm+judge", rm_weight=0.5, judge_weight=2.0,
                     missing_eos_penalty=0).weights() == [0.5, 2.0]
    with pytest.raises(CaitoolError, match="pass --judge MODEL"):
        JudgeOptions().load()


def test_configs_hold_whole_groups_and_the_kl_default():
    from caitool.commands._training import TrainFlags
    from caitool.training import args, critic_free, grpo, rloo

    def built(trainer, arguments=(), **options):
        (flags,), asked = args.parse((TrainFlags,), trainer.config_class,
                                     ["-m", "m", "-o", "o", *arguments], trainer.OWNED)
        return critic_free.configure(flags, asked, trainer.ALGORITHM,
                                     RLOptions(reward_model="rm", **options)).args

    # TRL's default batch (8 responses) rounded to whole groups of 3; TRL's GRPO default
    # beta (0) raised to the paper's pull towards the start, unless asked otherwise.
    config = built(rloo, group_size=3)
    assert config.per_device_train_batch_size == 6 and config.generation_batch_size == 6
    assert config.beta == 0.05 and config.reward_weights == [1.0, 1.0]
    assert built(grpo).beta == 0.05 and built(grpo, kl_coef=0.0).beta == 0.0
    assert built(grpo, ["--num_generations", "16"]).per_device_train_batch_size == 16
    assert built(rloo, ["--beta", "0.2"], kl_coef=0.1).beta == 0.2   # TRL's name wins
    with pytest.raises(CaitoolError, match="set it with --rm-weight and --judge-weight"):
        built(rloo, ["--reward_weights", "1", "2"])
