"""The backend interface: batch-first generation and option scoring.

A backend turns a list of :class:`~caitool.render.Prompt` into completions, or scores given
continuations after each prompt by their log-probability. Stages only ever talk to this
interface, so an in-process model, vLLM and a remote OpenAI-compatible server are
interchangeable.

Each backend declares its own options as a dataclass (``Options``) whose fields are the
flags it takes (``base_url`` is ``--base-url``) and whose ``__post_init__`` checks their
values; the registry refuses an option that the chosen backend does not declare.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from caitool.errors import CaitoolError
from caitool.render import Prompt


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                      # 0: no top-k cut
    repetition_penalty: float = 1.0     # 1: none; small real models loop without one
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


@dataclass
class NoOptions:
    """A backend that takes no options of its own."""


def flag_name(option: str) -> str:
    return "--" + option.replace("_", "-")


class Backend(ABC):
    """What every backend implements. Construction is cheap; the model loads on first use."""

    name: ClassVar[str] = "base"
    Options: ClassVar[type] = NoOptions
    # Whether the backend loads model files itself (then the built-in model is its default);
    # a server's backend names the server's model.
    loads_models: ClassVar[bool] = False

    def __init__(self, model: str, **options: Any):
        self.model = model
        self.options = self.Options(**options)

    @classmethod
    def for_replica(cls, options: dict[str, Any], gpus: float) -> tuple[dict[str, Any], tuple[str, ...]]:
        """What a Ray replica holding ``gpus`` GPUs builds this backend with: the options
        given, and the names of the environment variables it needs from the driver."""
        return options, ()

    @abstractmethod
    def has_chat_template(self) -> bool:
        """Whether the model renders chats itself ('auto' then means the chat format)."""

    @abstractmethod
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        """``params.n`` completions for each prompt, in input order."""

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        """Log-probability of each option continuing its prompt (summed over its tokens)."""
        raise CaitoolError(f"the '{self.name}' backend cannot score options")

    def describe(self) -> dict[str, Any]:
        """Provenance: what produced the outputs."""
        return {"backend": self.name, "model": self.model}

    def close(self) -> None:  # noqa: B027 - a backend with nothing to free keeps this
        """Free the model or the connections."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Generation halts on the token that completes a stop string; drop it and what follows."""
    cut = len(text)
    for marker in stop:
        index = text.find(marker)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]
