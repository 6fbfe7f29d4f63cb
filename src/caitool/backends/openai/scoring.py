"""Option scores from an OpenAI-compatible server, three ways, best first.

- ``echo`` (raw prompts): ``/completions`` with ``echo`` and ``logprobs`` returns the prompt's
  own token log-probabilities, so prompt+option gives the option's summed log-probability:
  the number the local backends compute.
- ``chat``: the answer cue and the options' shared start ("The answer is: (") are written for
  the model, and the ``top_logprobs`` of the next token score each option.
- ``sampled``: for servers that return no log-probabilities, short answers are sampled and
  the option each one picks is counted.

Whether the server gives log-probabilities is learnt from the first prompt of each kind and
remembered on the backend; the backend sends the requests. An answer without log-
probabilities means the server gives none (then answers are sampled); one whose log-
probabilities are malformed (not numbers, NaN, above 0, entries that are no objects) is a
:class:`BadAnswer`, retried and then a failed request, so no odd number reaches a label.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from caitool.backends.base import OptionScores, SamplingParams
from caitool.backends.openai.client import BadAnswer, short
from caitool.render import Prompt


class Sender(Protocol):
    """What scoring asks of the backend (backend.OpenAIBackend): it sends the requests and
    remembers what the server honours; this module only knows that much of it."""

    logprobs: dict[str, bool | None]
    prefill: bool | None
    score_samples: int

    def warn_once(self, key: str, message: str) -> None: ...

    async def post(self, endpoint: str, **body: Any) -> dict[str, Any]: ...

    async def run_all(self, jobs: list[Callable[[], Awaitable[Any]]]
                      ) -> tuple[list[Any], dict[int, str]]: ...

    async def request(self, prompt: Prompt, params: SamplingParams, n: int, seed: int | None,
                      extra: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], bool]: ...

    async def generate_each(self, prompts: list[Prompt], params: SamplingParams
                            ) -> tuple[list[list[str] | None], dict[int, str]]: ...

TOP_LOGPROBS = 20
SCORE_SAMPLES = 8
SCORE_MAX_TOKENS = 16
# Added to every count when turning sampled answers into probabilities, so an option that
# was never sampled keeps a finite log-probability.
SMOOTHING = 0.5
# Rounding can put a near-certain token's log-probability a hair above 0; more is an error.
LOGPROB_SLACK = 1e-4


class Unsupported(Exception):
    """The server answered without the log-probabilities that were asked for."""


class NoChoice(Exception):
    """Log-probabilities came back, but the answer never reached an option."""


async def score_all(backend: Sender, prompts: list[Prompt], options: list[list[str]]
                    ) -> tuple[list[OptionScores | None], dict[int, str]]:
    """Scores for each prompt, and the reason for each prompt whose requests failed."""
    results: list[OptionScores | None] = [None] * len(prompts)
    failures: dict[int, str] = {}
    # The first prompt of each kind goes alone, so that the rest know whether the server
    # gives log-probabilities before they are sent.
    first: dict[str, int] = {}
    for index, prompt in enumerate(prompts):
        first.setdefault("chat" if prompt.is_chat else "raw", index)
    probes = sorted(first.values())
    for group in (probes, [i for i in range(len(prompts)) if i not in probes]):
        done, failed = await backend.run_all(
            [lambda i=i: try_logprobs(backend, prompts[i], options[i]) for i in group])
        for position, index in enumerate(group):
            if position in failed:
                failures[index] = failed[position]
            else:
                results[index] = done[position]
    sample = [i for i, r in enumerate(results) if r is None and i not in failures]
    if sample:
        params = SamplingParams(max_new_tokens=SCORE_MAX_TOKENS, temperature=1.0,
                                n=backend.score_samples)
        answers, failed = await backend.generate_each([prompts[i] for i in sample], params)
        for position, index in enumerate(sample):
            if position in failed:
                failures[index] = failed[position]
            else:
                results[index] = OptionScores(
                    sampled_scores(answers[position] or [], options[index]), "sampled")
    return results, failures


async def try_logprobs(backend: Sender, prompt: Prompt, options: list[str]
                       ) -> OptionScores | None:
    """Scores from log-probabilities, or None where the server gives none."""
    kind = "chat" if prompt.is_chat else "raw"
    if backend.logprobs[kind] is False:
        return None
    try:
        if prompt.is_chat:
            scores = await chat_scores(backend, prompt, options)
        else:
            scores = [await echo_score(backend, prompt.text or "", option) for option in options]
    except NoChoice:
        return None  # this prompt alone is sampled
    except Unsupported as exc:
        if backend.logprobs[kind] is None:
            backend.logprobs[kind] = False
            backend.warn_once(f"sampled-{kind}", "the server returned no usable log-"
                              f"probabilities ({exc}); option scores are estimated from "
                              f"{backend.score_samples} sampled answers (method 'sampled')")
        return None
    backend.logprobs[kind] = True
    return OptionScores(scores, "logprobs")


def logprob(value: Any) -> float:
    """A server's log-probability as a float <= 0 (-inf allowed: probability 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnswer(f"a log-probability is not a number: {short(value)}")
    if value != value:  # noqa: PLR0124 - NaN; math.isnan overflows on a huge int
        raise BadAnswer("a log-probability is NaN")
    if value > LOGPROB_SLACK:
        raise BadAnswer(f"a log-probability is above 0: {short(value)}")
    try:
        return min(float(value), 0.0)
    except OverflowError:  # an integer below -1e308
        return -math.inf


def _field(container: dict[str, Any], key: str, kind: type, what: str) -> Any:
    """``container[key]``: None when absent or null, else checked to be a ``kind``."""
    value = container.get(key)
    if value is not None and not isinstance(value, kind):
        raise BadAnswer(f"{what} is not {'a list' if kind is list else 'an object'}: "
                        f"{short(value)}")
    return value


# -- echo: raw prompts ---------------------------------------------------------------------


async def echo_score(backend: Sender, text: str, option: str) -> float:
    payload = await backend.post("completions", prompt=text + option, max_tokens=1,
                                 temperature=0, echo=True, logprobs=1)
    choice = payload["choices"][0] if payload["choices"] else {}
    return read_echo(choice if isinstance(choice, dict) else {}, text, option)


def read_echo(choice: dict[str, Any], text: str, option: str) -> float:
    logprobs = _field(choice, "logprobs", dict, "'logprobs'")
    if logprobs is None:
        raise Unsupported("no log-probabilities in the answer")
    if not str(choice.get("text") or "").startswith(text + option):
        raise Unsupported("the prompt was not echoed")
    return echo_option_logprob(logprobs, len(text), len(option))


def echo_option_logprob(logprobs: dict[str, Any], prompt_chars: int, option_chars: int) -> float:
    """Sum of the option's token log-probabilities from a completions ``echo`` answer: the
    tokens that overlap characters [prompt_chars, prompt_chars + option_chars)."""
    tokens = _field(logprobs, "tokens", list, "'logprobs.tokens'")
    values = _field(logprobs, "token_logprobs", list, "'logprobs.token_logprobs'")
    offsets = _field(logprobs, "text_offset", list, "'logprobs.text_offset'")
    if not tokens or not values or not offsets:
        raise Unsupported("no echoed prompt log-probabilities")
    if not len(tokens) == len(values) == len(offsets):
        raise BadAnswer("the echoed tokens, log-probabilities and offsets differ in number")
    end = prompt_chars + option_chars
    total = 0.0
    counted = 0
    for token, value, offset in zip(tokens, values, offsets, strict=True):
        if not isinstance(token, str):
            raise BadAnswer(f"an echoed token is not a string: {short(token)}")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise BadAnswer(f"an echoed offset is not a whole number: {short(offset)}")
        number = None if value is None else logprob(value)
        if offset < end and offset + max(len(token), 1) > prompt_chars:
            if number is None:
                raise Unsupported("no log-probability for an option token")
            total += number
            counted += 1
    if not counted:
        raise Unsupported("the option's tokens are missing from the echo")
    return total


# -- chat: the next token's top log-probabilities ------------------------------------------


def option_keys(options: list[str]) -> tuple[str, list[str]]:
    """The text all options share at the start, and what tells each apart (stripped):
    ``[" (A)", " (B)"]`` -> ``(" (", ["A)", "B)"])``."""
    shared = os.path.commonprefix(options)
    return shared, [option[len(shared):].strip() for option in options]


async def chat_scores(backend: Sender, prompt: Prompt, options: list[str]) -> list[float]:
    shared, keys = option_keys(options)
    # Written for the model when the server can continue a message, so the first token decides.
    lead = Prompt(messages=prompt.messages,
                  assistant_prefix=(prompt.assistant_prefix + shared).rstrip())
    extra = {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
    params = SamplingParams(max_new_tokens=1 if backend.prefill is not False else
                            SCORE_MAX_TOKENS, temperature=0)
    choices, prefilled = await backend.request(lead, params, 1, None, extra)
    if not prefilled and params.max_new_tokens == 1:
        # The prefix was just found to be unsupported: ask for a whole short answer.
        params.max_new_tokens = SCORE_MAX_TOKENS
        choices, prefilled = await backend.request(lead, params, 1, None, extra)
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    return read_chat(choice, shared, keys, prefilled)


def read_chat(choice: dict[str, Any], shared: str, keys: list[str], prefilled: bool) -> list[float]:
    logprobs = _field(choice, "logprobs", dict, "'logprobs'")
    positions = _field(logprobs, "content", list, "'logprobs.content'") if logprobs else None
    if not positions:
        raise Unsupported("no log-probabilities in the answer")
    scores = chat_logprob_scores(positions, "" if prefilled else shared, keys, prefilled)
    if scores is None:
        raise NoChoice("the answer picked no option")
    return scores


def logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def top_logprob_scores(candidates: dict[str, float], keys: list[str]) -> list[float]:
    """Log-probability of each option from one position's top tokens: every candidate token
    that starts an option's distinguishing text counts for it (" A" and "A" both count for
    "A)"). An option missing from the candidates gets the most it can have: what the list
    leaves over, and no more than the least likely token listed."""
    scores: list[float | None] = []
    for key in keys:
        matches = [lp for token, lp in candidates.items()
                   if token.strip() and key and (key.startswith(token.strip())
                                                 or token.strip().startswith(key))]
        scores.append(logsumexp(matches) if matches else None)
    left = 1.0 - sum(math.exp(lp) for lp in candidates.values())
    floor = min(min(candidates.values()), math.log(max(left, 1e-12)))
    return [floor if s is None else s for s in scores]


def chat_logprob_scores(positions: list[dict[str, Any]], shared: str, keys: list[str],
                        prefilled: bool) -> list[float] | None:
    """Option scores from a chat answer's per-token ``logprobs.content``.

    With the shared option text already written (``prefilled``), the first generated
    position decides. Otherwise the answer is scanned for the first token that starts an
    option right after the shared text (``(`` then ``A``), and that position's top tokens
    decide. None when no position qualifies."""
    written = ""
    anchor = shared.strip()
    for index, position in enumerate(positions):
        token, value, top = _position(position)
        candidates = dict(top)
        if value is not None:
            candidates.setdefault(token, value)
        if prefilled and index == 0:
            return top_logprob_scores(candidates, keys) if candidates else None
        starts_option = token.strip() and any(
            k.startswith(token.strip()) or token.strip().startswith(k) for k in keys if k)
        if starts_option and written.rstrip().endswith(anchor) and candidates:
            return top_logprob_scores(candidates, keys)
        written += token
    return None


def _position(position: Any) -> tuple[str, float | None, list[tuple[str, float]]]:
    """One generated position of a chat answer, checked: its token, that token's
    log-probability, and the top tokens with theirs (entries without a number are left out)."""
    if not isinstance(position, dict):
        raise BadAnswer(f"a log-probability entry is not an object: {short(position)}")
    token = position.get("token")
    if token is not None and not isinstance(token, str):
        raise BadAnswer(f"a token is not a string: {short(token)}")
    value = position.get("logprob")
    top = []
    for entry in _field(position, "top_logprobs", list, "'top_logprobs'") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            raise BadAnswer(f"a top log-probability entry is not a token and a number: "
                            f"{short(entry)}")
        if entry.get("logprob") is not None:
            top.append((entry["token"], logprob(entry["logprob"])))
    return token or "", None if value is None else logprob(value), top


# -- sampled: how often each option is picked ----------------------------------------------


def pick_option(text: str, options: list[str]) -> int | None:
    """Which option a sampled answer chose: the earliest option text in it (" (A)" is found
    as "(A)"), else a bare letter as its first word. None if neither."""
    best: tuple[int, int] | None = None
    for index, option in enumerate(options):
        key = option.strip()
        at = text.find(key) if key else -1
        if at != -1 and (best is None or at < best[0]):
            best = (at, index)
    if best is not None:
        return best[1]
    first = re.match(r"\W*(\w+)", text)
    if first:
        for index, option in enumerate(options):
            if re.sub(r"\W", "", option) == first.group(1):
                return index
    return None


def sampled_scores(texts: list[str], options: list[str]) -> list[float]:
    """Pseudo log-probabilities from how often each option was chosen (smoothed)."""
    counts = [0] * len(options)
    for text in texts:
        choice = pick_option(text, options)
        if choice is not None:
            counts[choice] += 1
    total = sum(counts) + SMOOTHING * len(options)
    return [math.log((c + SMOOTHING) / total) for c in counts]
