"""A scripted, deterministic backend for fast tests of commands, flags, errors and label maths.

It runs no model: replies are made from the prompt by a template, option scores come from
the script, and every call is recorded (``calls``), so a test can check exactly what a
stage asked for. It is registered as ``--backend fake`` (an entry point, like any plugin);
``-m`` names a JSON script file, or ``fake`` for the defaults:

    {"reply": "Reply {n} to: {last}",  # {n}: a running count; {last}: the last user turn
     "replies": ["One.", "Two."],      # instead: the n-th reply is the n-th of these, cycling
     "chat_template": true,            # false: the model has none ('auto' means raw)
     "scores": [-0.5, -1.5],           # log-probabilities of the options " (A)", " (B)"
     "fail_on": "FAIL",                # a prompt containing this fails for good
     "raise_on": "CRASH"}              # one containing this raises, as a broken model would

End-to-end tests use a real (tiny) model instead; this is for what does not need one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool.backends.base import Backend, OptionScores, RequestsFailed, SamplingParams, cut_at_stop
from caitool.errors import CaitoolError
from caitool.render import Prompt

DEFAULT_SCRIPT: dict[str, Any] = {
    "reply": "Reply {n} to: {last}",
    "replies": None,
    "chat_template": True,
    "scores": [-0.5, -1.5],
    "fail_on": None,
    "raise_on": None,
}


@dataclass
class Call:
    method: str                       # "generate" or "score"
    prompts: list[Prompt]
    params: SamplingParams | None = None
    options: list[list[str]] | None = None


class FakeBackend(Backend):
    """Takes no options from the command line; in-process tests may pass ``script``."""

    name = "fake"

    def __init__(self, model: str, script: dict[str, Any] | None = None, **options: Any):
        super().__init__(model, **options)
        self.script = {**DEFAULT_SCRIPT, **_load_script(model), **(script or {})}
        self.calls: list[Call] = []
        self.closed = False
        self._count = 0

    def has_chat_template(self) -> bool:
        return bool(self.script["chat_template"])

    def _fails(self, prompt: Prompt, key: str = "fail_on") -> bool:
        marker = self.script[key]
        if not marker:
            return False
        text = prompt.text or "".join(content for _, content in prompt.messages or ())
        return marker in text

    def _reply(self, prompt: Prompt, params: SamplingParams) -> str:
        self._count += 1
        if prompt.is_chat:
            users = [content for role, content in prompt.messages or () if role == "user"]
            last = users[-1] if users else ""
        else:
            last = (prompt.text or "").rstrip().rsplit("\n", 1)[-1]
        replies = self.script["replies"]
        if replies:
            text = str(replies[(self._count - 1) % len(replies)])
        else:
            text = self.script["reply"].format(n=self._count, last=last)
        words = text.split(" ")[:params.max_new_tokens]
        return cut_at_stop(" ".join(words), params.stop).strip()

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        self.calls.append(Call("generate", list(prompts), params=params))
        if any(self._fails(prompt, "raise_on") for prompt in prompts):
            raise RuntimeError("scripted crash")
        results: list[list[str] | None] = []
        failures: dict[int, str] = {}
        for index, prompt in enumerate(prompts):
            if self._fails(prompt):
                failures[index] = "scripted failure"
                results.append(None)
            else:
                results.append([self._reply(prompt, params) for _ in range(max(1, params.n))])
        if failures:
            raise RequestsFailed(failures, results)
        return results  # type: ignore[return-value]

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        self.calls.append(Call("score", list(prompts), options=[list(o) for o in options]))
        scores = [float(s) for s in self.script["scores"]]
        out = []
        for opts in options:
            if len(opts) > len(scores):
                raise CaitoolError(f"the fake script scores {len(scores)} options, not {len(opts)}")
            out.append(OptionScores(scores[:len(opts)]))
        return out

    def close(self) -> None:
        self.closed = True


def _load_script(model: str) -> dict[str, Any]:
    if model == "fake":
        return {}
    path = Path(model)
    try:
        script = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaitoolError(f"fake backend: no script file '{model}' (or use -m fake)") from None
    except (OSError, ValueError) as exc:
        raise CaitoolError(f"fake backend: cannot read the script '{model}': {exc}") from None
    if not isinstance(script, dict) or set(script) - set(DEFAULT_SCRIPT):
        raise CaitoolError(f"fake backend: the script '{model}' must be an object with keys "
                           f"{', '.join(DEFAULT_SCRIPT)}")
    return script
