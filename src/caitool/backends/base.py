"""The backend interface: batch-first generation and option scoring.

A backend turns a list of :class:`Prompt` into completions, or scores given continuations
after each prompt by their log-probability. Commands only ever talk to this interface, so an
in-process model, vLLM and a remote OpenAI-compatible server are interchangeable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from caitool.errors import CaitoolError


@dataclass(frozen=True)
class Prompt:
    """One request: chat ``messages`` (rendered by the model's chat template, then
    ``assistant_prefix`` opens the reply), or a raw transcript ``text`` used as it is."""

    messages: tuple[tuple[str, str], ...] | None = None
    text: str | None = None
    assistant_prefix: str = ""

    @classmethod
    def chat(cls, messages: list[dict[str, str]], assistant_prefix: str = "") -> Prompt:
        return cls(messages=tuple((m["role"], m["content"]) for m in messages),
                   assistant_prefix=assistant_prefix)

    @classmethod
    def raw(cls, text: str) -> Prompt:
        return cls(text=text)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages or ()]


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class OptionScores:
    """Log-probabilities of each option after a prompt; ``method`` says how they were got
    (``logprobs``, or ``sampled`` when a server offers no log-probabilities)."""

    logprobs: list[float]
    method: str = "logprobs"


class RequestsFailed(CaitoolError):
    """Some prompts of a batch failed for good (a remote server kept erroring); the others
    succeeded. ``failures`` maps prompt index to reason; ``results`` holds the outputs in
    input order, None where the prompt failed. Callers write what succeeded and report the
    rest, so one bad request does not cost the batch."""

    def __init__(self, failures: dict[int, str], results: list[Any]):
        self.failures = failures
        self.results = results
        first = failures[min(failures)]
        super().__init__(f"{len(failures)} of {len(results)} requests failed (first: {first})")


class Backend(ABC):
    """What every backend implements. Construction is cheap; the model loads on first use."""

    name: str = "base"

    def __init__(self, model: str, **options: Any):
        self.model = model
        self.options = options

    @abstractmethod
    def default_format(self) -> str:
        """'chat' when the model has a chat template, else 'raw'."""

    @abstractmethod
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        """``params.n`` completions for each prompt, in input order."""

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        """Log-probability of each option continuing its prompt (summed over its tokens)."""
        raise NotImplementedError(f"the '{self.name}' backend cannot score options")

    def describe(self) -> dict[str, Any]:
        """Provenance: what produced the outputs."""
        return {"backend": self.name, "model": self.model}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model's memory."""
